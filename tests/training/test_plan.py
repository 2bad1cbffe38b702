"""`sdar plan`: the estimator's arithmetic by hand for a small architecture, sharding, LoRA, vLLM, the
recommendation and the CLI, and one measured step against the estimate."""

import json

import pytest

from sdar.cli import main
from sdar.config import load_config
from sdar.errors import ConfigError
from sdar.models.architectures import ARCHITECTURES, hf_config
from sdar.models.shapes import model_shape, resolve_architecture
from sdar.training.plan import GIB, PHASES, estimate, make_plan

# SmolLM2-135M's shapes, 2 layers: h 576, 9 heads of 64, 3 KV heads (kv 192), MLP 1536, vocab 49,152, tied.
SMALL = [
    "model.name=random:smollm2-135m?layers=2",
    "rollout.tasks_per_step=2",
    "rollout.group_size=2",
    "rollout.max_prompt_tokens=64",
    "rollout.max_new_tokens=32",
    "trainer.micro_batch_rows=2",
]
# The SDAR preset: bf16 weights, bf16 autocast, gradient checkpointing, full fine-tuning, KL 0.01, live
# teacher.
PRESET = "alfworld_qwen2.5-3b_sdar"
PARAMETERS = 49152 * 576 + 2 * (2 * 576 * 576 + 2 * 576 * 192 + 3 * 576 * 1536 + 2 * 576) + 576
MODEL = 2 * PARAMETERS  # bf16 bytes: 70,784,640


def small(*overrides):
    return load_config(PRESET, [*SMALL, *overrides])


def terms_of(result, phase):
    return {term.name: term.phases[phase] for term in result.terms if phase in term.phases}


def test_small_architecture_by_hand():
    config = small()
    shape = model_shape(config.model)
    assert shape.parameters == PARAMETERS == 35_392_320
    result = estimate(config, shape, gpus=1, gpu_memory=80 * GIB)
    for phase in PHASES:  # what every phase holds
        held = terms_of(result, phase)
        assert held["weights"] == held["gradients"] == held["KL reference"] == MODEL
        assert held["AdamW moments"] == 2 * MODEL and held["teacher (live)"] == 0
    # rollout (hf, bf16, no autocast): 4 episodes; the prefill of 4 x 64 tokens beats the last decode step.
    kv_per_token = 2 * 2 * 192 * 2  # layers x (k, v) x kv x bytes = 1536
    layer = 4 * 2 * 576 + 3 * 2 * 1536  # four hidden-sized tensors + SiLU/up/product (MLP > attention)
    rollout = terms_of(result, "rollout")
    assert rollout["KV cache (hf)"] == 4 * 64 * kv_per_token == 393_216
    assert rollout["sampling work"] == 4 * 64 * (layer + 64) == 3_555_328  # + the bool mask's 64 B/token
    # scoring: the LM head chunk (64 scored tokens x vocab x 8 B) beats a layer; + the teacher's prefix cache
    head = (192 + 2 * 64) * 2 * 576 + 64 * 49152 * 8
    assert terms_of(result, "scoring")["scoring work"] == head + 192 * kv_per_token == 25_829_376
    # update: checkpointed layer inputs + final norm, bool mask, RoPE's cos and sin, scored hidden states ...
    stack = 2 * 2 * 576 * 192 + 192 * ((4 + 2) * 576 + 96 + 2 * 64 * 2) + 64 * 576 * 2
    backward = terms_of(result, "backward")
    assert backward["update activations"] == stack == 1_247_232
    # ... and the tied embedding's three V x h gradients at the end of the backward beat a recomputed layer
    # (26,340 B/token: norms 6912 + their outputs 2304 + attention 4836 + MLP 12288) and the logits chunk
    # (64 x 49152 x 20).
    assert backward["backward work"] == 3 * 49152 * 576 * 2 - stack
    assert terms_of(result, "step")["AdamW temporaries"] == MODEL
    # weights, gradients, reference (1 each) and moments (2) = 5 model-sized tensors held throughout
    assert result.total("backward") == 5 * MODEL + 3 * 49152 * 576 * 2 == 523_792_512
    assert result.peak_phase == "backward" and result.peak == 523_792_512
    assert result.total("step") == 6 * MODEL and result.total("rollout") == 5 * MODEL + 393_216 + 3_555_328


def test_fsdp_divides_what_it_shards_and_gathers_the_rest():
    config = small("trainer.sharding=fsdp")
    shape = model_shape(config.model)
    result = estimate(config, shape, gpus=2, gpu_memory=80 * GIB)
    root = 2 * (49152 * 576 + 576)  # embedding (tied LM head) + final norm
    layer = 2 * (2 * 576 * 576 + 2 * 576 * 192 + 3 * 576 * 1536 + 2 * 576)
    assert (shape.root_bytes, shape.layer_bytes) == (root, layer)
    held = terms_of(result, "step")
    assert held["weights"] == held["KL reference"] == MODEL / 2 and held["AdamW moments"] == MODEL
    gathered = {phase: term for phase, term in terms_of_all(result, "FSDP gathered").items()}
    assert gathered["rollout"] == gathered["scoring"] == MODEL  # no-grad passes gather the whole model
    assert gathered["backward"] == root + 2 * layer + (root + layer)  # root + 2 layers + their gradients
    assert terms_of(result, "rollout")["KV cache (hf)"] == 2 * 64 * 1536  # 2 episodes per GPU
    offloaded = estimate(small("trainer.sharding=fsdp", "trainer.cpu_offload=true"), shape, 2, 80 * GIB)
    assert terms_of(offloaded, "step")["weights"] == 0 and terms_of(offloaded, "step")["AdamW moments"] == 0
    with pytest.raises(ConfigError, match="does not divide among 4 GPUs"):
        estimate(small("rollout.tasks_per_step=6"), shape, 4, 80 * GIB)


def terms_of_all(result, name):
    (term,) = [term for term in result.terms if term.name == name]
    return term.phases


def test_lora_trains_fp32_adapters_without_a_reference_copy():
    config = small("model.lora_rank=8")
    shape = model_shape(config.model)
    adapters = 2 * 8 * ((576 + 576) * 2 + (576 + 192) * 2 + (576 + 1536) * 3)  # q o, k v, gate up down
    assert shape.trainable == adapters == 162_816 and shape.trainable_bytes == 4 * adapters
    assert shape.lora_inputs == 6 * 576 + 1536  # the input features of one layer's 7 wrapped linears
    result = estimate(config, shape, gpus=1, gpu_memory=80 * GIB)
    held = terms_of(result, "scoring")
    assert "KL reference" not in held and held["weights"] == MODEL + 4 * adapters
    assert held["gradients"] == 4 * adapters and held["AdamW moments"] == 8 * adapters
    # sampling runs without autocast: peft casts each bf16 input to the fp32 adapters (4h), and the MLP
    # holds the adapter branch's output and sum besides (16i)
    layer = 4 * 2 * 576 + 4 * 576 + 16 * 1536
    assert terms_of(result, "rollout")["sampling work"] == 4 * 64 * (layer + 64) == 8_077_312


def test_several_teachers_hold_one_set_of_weights_per_kind_they_score_with():
    contexts = "{line: {}, base: {weights: base, skills: false}, slow: {weights: ema}, slow2: {weights: ema}}"
    config = small("algorithm.kl_coef=0", f"teacher.contexts={contexts}")
    shape = model_shape(config.model)
    result = estimate(config, shape, gpus=1, gpu_memory=80 * GIB)
    scoring = terms_of(result, "scoring")
    teachers = {name: held for name, held in scoring.items() if name.startswith("teacher")}
    # live: the policy itself; base: a frozen bf16 copy (no KL reference to share, no LoRA); ema: one fp32
    # average for both ema contexts, plus the live weights set aside while it is swapped in for scoring
    assert teachers == {"teacher (live)": 0, "teacher (base)": MODEL, "teacher (ema)": 4 * PARAMETERS + MODEL}
    assert terms_of(result, "backward")["teacher (ema)"] == 4 * PARAMETERS


def test_vllm_holds_its_share_while_sampling_or_always_without_sleep():
    shape = model_shape(small().model)
    asleep = estimate(small("rollout.backend=vllm"), shape, 1, 80 * GIB)
    assert terms_of_all(asleep, "vLLM engine") == {"rollout": 0.4 * 80 * GIB}
    assert "KV cache (hf)" not in {term.name for term in asleep.terms}
    awake = estimate(small("rollout.backend=vllm", "rollout.vllm.sleep=false"), shape, 1, 80 * GIB)
    assert terms_of_all(awake, "vLLM engine") == dict.fromkeys(PHASES, 0.4 * 80 * GIB)


def test_the_paper_7b_preset_needs_fsdp_on_eight_80_gib_gpus(capsys):
    plan = make_plan(load_config("alfworld_qwen2.5-7b_sdar"), gpus=8, gpu_memory_gib=80)
    assert not plan.fits and plan.estimate.peak_phase == "step"
    assert plan.changes() == ["trainer.sharding=fsdp"] and plan.recommendation.peak <= plan.budget
    assert main(["plan", "alfworld_qwen2.5-7b_sdar", "--gpus", "8", "--gpu-memory", "80", "--json"]) == 1
    printed = capsys.readouterr()
    data = json.loads(printed.out)
    assert data["fits"] is False and data["recommendation"]["overrides"] == ["trainer.sharding=fsdp"]
    assert data["peak_phase"] == "step" and data["terms"][0]["name"] == "weights"
    reason = printed.err.strip()
    assert reason.count("\n") == 0 and "AdamW moments" in reason and "trainer.sharding=fsdp" in reason
    assert main(["plan", "alfworld_qwen2.5-7b_sdar", "--gpus", "8", "trainer.sharding=fsdp"]) == 0
    assert "fits" in capsys.readouterr().out


def test_nothing_fits_a_tiny_gpu_and_the_reason_says_so(capsys):
    assert main(["plan", "alfworld_qwen2.5-3b_sdar", "--gpu-memory", "4"]) == 1
    err = capsys.readouterr().err
    assert "no sharding, offload, checkpointing or micro-batch setting fits" in err


def test_candidates_try_the_configured_placement_first_then_cheaper_changes():
    from sdar.training.plan import candidate_settings

    config = small("model.gradient_checkpointing=false", "trainer.micro_batch_rows=4")
    settings = list(candidate_settings(config, gpus=8))
    first = settings[0]
    assert (first.sharding, first.cpu_offload, first.gradient_checkpointing, first.micro_batch_rows) == (
        "none", False, False, 4)  # fmt: skip
    assert [s.micro_batch_rows for s in settings[:3]] == [4, 2, 1]
    assert settings[3].gradient_checkpointing and settings[-1].sharding == "fsdp" and settings[-1].cpu_offload
    one_gpu = {(s.sharding, s.cpu_offload) for s in candidate_settings(config, gpus=1)}
    assert one_gpu == {("none", False), ("fsdp", True)}  # sharding over one GPU alone saves nothing


def test_shapes_come_from_a_model_folder_or_the_hugging_face_cache(tmp_path, monkeypatch):
    arch = ARCHITECTURES["qwen2.5-0.5b"]
    hf_config(arch).save_pretrained(tmp_path / "folder")
    read, source = resolve_architecture(str(tmp_path / "folder"))
    assert read.hidden_size == 896 and read.num_kv_heads == 2 and source.endswith("config.json")

    import huggingface_hub.constants

    snapshot = tmp_path / "hub" / "models--Qwen--Qwen2.5-0.5B-Instruct" / "snapshots" / "abc"
    hf_config(arch.with_layers(3)).save_pretrained(snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    cached, source = resolve_architecture("Qwen/Qwen2.5-0.5B-Instruct")
    assert cached.num_layers == 3 and "snapshots" in source  # the cached config wins over the registry
    registry, source = resolve_architecture("Qwen/Qwen2.5-3B-Instruct")
    assert registry is ARCHITECTURES["qwen2.5-3b"] and "registry" in source
    with pytest.raises(ConfigError, match="no config.json"):
        resolve_architecture("someone/unknown-model")


def test_a_measured_step_agrees_with_the_estimate():
    """One step of a 2-layer SmolLM2-shaped model without checkpointing, measured on this CPU by torch's
    allocation profiler (sdar.training.memory_check): the weights, gradients, moments and reference exactly,
    every phase's peak within the 2 % docs/plan.md states for benchmarks/memory_plan.py."""
    from sdar.training.memory_check import measure_step

    config = load_config(PRESET, [
        "model.name=random:smollm2-135m?layers=2&tokenizer=tiny", "rollout.tasks_per_step=1",
        "rollout.group_size=2", "rollout.max_prompt_tokens=128", "rollout.max_new_tokens=16",
        "trainer.micro_batch_rows=2", "model.gradient_checkpointing=false",
    ])  # fmt: skip
    measured = measure_step(config)
    result = estimate(config, model_shape(config.model), gpus=1, gpu_memory=80 * GIB)
    held = terms_of(result, "step")
    assert measured.static == {
        name: held[name] for name in ("weights", "gradients", "AdamW moments", "KL reference")
    }
    assert set(measured.peaks) == set(PHASES)
    for phase, peak in measured.peaks.items():
        assert result.total(phase) == pytest.approx(peak, rel=0.02), phase
