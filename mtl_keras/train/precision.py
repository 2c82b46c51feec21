"""Training speed helpers: mixed-precision policy choice (measured on CPUs) and images/s per epoch.

The train command wires these in; the Python API user can call them the same way. (Choosing a
distribution strategy lives in ``mtl_keras.train.distribute.get_strategy``.)

Example:
    >>> mixed_precision_policy("auto", compute_capabilities=[(9, 0)])
    'mixed_bfloat16'
    >>> mixed_precision_policy("auto", compute_capabilities=[], cpu_flags={"avx2", "fma"})
    'float32'
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from mtl_keras.errors import MtlError

MIXED_PRECISION_MODES = ("auto", "float16", "bfloat16", "off")
_POLICIES = {"float16": "mixed_float16", "bfloat16": "mixed_bfloat16", "off": "float32"}

# Linux /proc/cpuinfo flags that mean bfloat16 math runs in hardware: x86 AVX-512 BF16 and AMX-BF16,
# Arm's BF16 extension. Without them oneDNN declines bfloat16 and TensorFlow falls back to Eigen,
# which converts every element to float32 and back.
NATIVE_BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
# mixed_bfloat16 also costs some accuracy headroom; a gain within timing noise is not worth it.
BFLOAT16_MIN_SPEEDUP = 1.1
# The probe's result, measured once per process: {"ratio": float}.
_probe_cache: dict = {}


@dataclass(frozen=True)
class PrecisionChoice:
    """What ``--mixed-precision MODE`` resolved to, and why; ``str()`` is the line ``mtl-keras train`` prints.

    ``speedup`` is the measured float32 ÷ mixed_bfloat16 step time when a CPU probe ran (or was injected),
    else None.

    Example:
        >>> str(PrecisionChoice("auto", "float32", "CPU has no native bfloat16: avx512_bf16/amx_bf16 absent"))
        'mixed precision auto: float32 (CPU has no native bfloat16: avx512_bf16/amx_bf16 absent)'
    """

    mode: str
    policy: str
    reason: str
    speedup: float | None = None

    def __str__(self) -> str:
        return f"mixed precision {self.mode}: {self.policy} ({self.reason})"


def gpu_compute_capabilities() -> list[tuple[int, int]]:
    """``(major, minor)`` compute capability of every visible GPU; ``[]`` on a CPU-only machine.

    Example:
        >>> isinstance(gpu_compute_capabilities(), list)
        True
    """
    capabilities = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        # Devices that report no capability (non-CUDA plugins) count as the oldest kind.
        capabilities.append(tuple(details.get("compute_capability") or (0, 0)))
    return capabilities


def read_cpu_flags(path: str = "/proc/cpuinfo") -> frozenset[str] | None:
    """The CPU's feature flags as Linux lists them (x86 ``flags``, Arm ``Features``); None where unknown.

    None means "cannot tell" (no ``/proc/cpuinfo``: macOS, Windows), not "has none".

    Args:
        path: the cpuinfo file to read (default ``/proc/cpuinfo``).

    Returns:
        A frozenset of flag names from the first ``flags``/``Features`` line, or None.

    Example:
        >>> flags = read_cpu_flags()
        >>> flags is None or isinstance(flags, frozenset)
        True
    """
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return None


def cpu_has_native_bfloat16(cpu_flags=None) -> bool | None:
    """Whether the CPU does bfloat16 math in hardware (see ``NATIVE_BFLOAT16_CPU_FLAGS``); None if unknown.

    ``cpu_flags`` defaults to ``read_cpu_flags()``.

    Args:
        cpu_flags: a set of CPU flag names; ``None`` reads them with ``read_cpu_flags``.

    Returns:
        True or False, or None when the flags cannot be read.

    Example:
        >>> cpu_has_native_bfloat16({"avx2", "fma"}), cpu_has_native_bfloat16({"avx512f", "avx512_bf16"})
        (False, True)
    """
    if cpu_flags is None:
        cpu_flags = read_cpu_flags()
        if cpu_flags is None:
            return None
    return any(flag in cpu_flags for flag in NATIVE_BFLOAT16_CPU_FLAGS)


def _probe_step(policy: str, x, channels: int, layers: int):
    """A traced train step (forward, backward, SGD update) of ``layers`` x (Conv 3x3 + BatchNorm + ReLU)."""
    # Explicit names and seeded initializers: the probe must not shift Keras' auto-name counters
    # (``conv2d_1`` ...) or the global RNG that ``keras.utils.set_random_seed`` set for the real model.
    blocks = []
    shape = tuple(x.shape)
    for i in range(layers):
        conv = keras.layers.Conv2D(channels, 3, padding="same", use_bias=False, dtype=policy,
                                   kernel_initializer=keras.initializers.HeNormal(seed=i),
                                   name=f"mtl_bf16_probe_conv{i}")
        bn = keras.layers.BatchNormalization(dtype=policy, name=f"mtl_bf16_probe_bn{i}")
        # Built from shapes: an eager call would cost seconds where bfloat16 is emulated.
        conv.build(shape)
        shape = shape[:-1] + (channels,)
        bn.build(shape)
        blocks.append((conv, bn))
    variables = [v for block in blocks for layer in block for v in layer.trainable_variables]

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            y = x
            for conv, bn in blocks:
                y = tf.nn.relu(bn(conv(y), training=True))
            loss = tf.reduce_mean(tf.square(tf.cast(y, "float32")))
        # The update keeps the backward pass in the graph (an unused gradient would be pruned).
        for v, g in zip(variables, tape.gradient(loss, variables)):
            v.assign_sub(1e-3 * g)
        return loss

    return step


def measure_cpu_bfloat16_speedup(batch_size: int = 32, image_size: int = 16, channels: int = 64, layers: int = 3,
                                 warmup: int = 2, rounds: int = 5, budget_s: float = 2.0) -> float:
    """float32 ÷ mixed_bfloat16 time of a small conv train step on this CPU (> 1: bfloat16 is faster).

    Always measures (``cpu_bfloat16_speedup`` caches). The step is ``layers`` Conv2D 3x3 + BatchNorm +
    ReLU on a ``[batch_size, image_size, image_size, channels]`` batch, forward + backward + update,
    the pattern that dominates a ResNet train step. ``warmup`` untimed calls of each (the first traces),
    then up to ``rounds`` interleaved timed rounds, order alternating; the median of each is taken.
    Warm-up and rounds stop once ``budget_s`` has passed (at least one timed round always runs), so
    with the defaults the probe takes about 2-3 s where bfloat16 is native (the budget counts tracing;
    one round may overrun it). Where bfloat16 is emulated one step alone takes ~1.5 s: forced there,
    it takes ~4 s.
    It runs TensorFlow ops, so TensorFlow's thread settings must be made before it.

    Args:
        batch_size: images in the probe batch.
        image_size: side of the probe's square feature map, in pixels.
        channels: channels of every probe layer.
        layers: the number of Conv + BatchNorm + ReLU blocks.
        warmup: untimed calls of each policy's step (at least 1).
        rounds: timed rounds at most (at least 1 runs).
        budget_s: seconds after which no further warm-up call or round starts.

    Returns:
        The median float32 step time over the median mixed_bfloat16 step time, a float.

    Example:
        >>> r = measure_cpu_bfloat16_speedup(batch_size=2, image_size=8, channels=8, layers=1, rounds=1)
        >>> r > 0
        True
    """
    start = time.perf_counter()
    deadline = start + budget_s
    data = np.random.default_rng(0).standard_normal((batch_size, image_size, image_size, channels)).astype("float32")
    with tf.device("/CPU:0"):
        x = tf.constant(data)
        steps = {policy: _probe_step(policy, x, channels, layers) for policy in ("float32", "mixed_bfloat16")}
        for i in range(max(1, warmup)):
            if i > 0 and time.perf_counter() > deadline:
                break
            for step in steps.values():
                step().numpy()
        times = {policy: [] for policy in steps}
        order = list(steps)
        for r in range(max(1, rounds)):
            if r > 0 and time.perf_counter() > deadline:
                break
            # Alternating which goes first spreads any drift in machine load over both.
            for policy in order if r % 2 == 0 else order[::-1]:
                t0 = time.perf_counter()
                steps[policy]().numpy()
                times[policy].append(time.perf_counter() - t0)
    return statistics.median(times["float32"]) / max(statistics.median(times["mixed_bfloat16"]), 1e-9)


def cpu_bfloat16_speedup(cpu_flags=None, force: bool = False) -> float | None:
    """This CPU's measured mixed_bfloat16 speedup over float32 (``measure_cpu_bfloat16_speedup``), once per process.

    None when skipped: the CPU has no native bfloat16 (``cpu_has_native_bfloat16`` is False), so the
    answer is known to be < 1 and not worth ~2 s of probing. ``force=True`` measures anyway. Where the
    flags are unknown (non-Linux), it measures.

    Args:
        cpu_flags: a set of CPU flag names; ``None`` reads ``/proc/cpuinfo``.
        force: measure even where the flags say bfloat16 is emulated.

    Returns:
        The cached ratio (> 1: bfloat16 is faster), or None when skipped.

    Example:
        >>> cpu_bfloat16_speedup(cpu_flags={"avx2", "fma"}) is None
        True
    """
    if not force and cpu_has_native_bfloat16(cpu_flags) is False:
        return None
    if "ratio" not in _probe_cache:
        _probe_cache["ratio"] = measure_cpu_bfloat16_speedup()
    return _probe_cache["ratio"]


def choose_mixed_precision(mode: str = "auto", compute_capabilities=None, cpu_flags=None,
                           cpu_speedup: float | None = None) -> PrecisionChoice:
    """Resolve ``--mixed-precision auto|float16|bfloat16|off`` to a Keras dtype policy, with the reason.

    An explicit ``float16`` / ``bfloat16`` / ``off`` is honoured as asked. ``auto``:

    - GPUs (``compute_capabilities``, default: the visible ones): ``mixed_bfloat16`` when every GPU has
      compute capability >= 8.0 (Ampere and later run bfloat16 on tensor cores and need no loss
      scaling), else ``mixed_float16``.
    - No GPU, and the CPU lacks native bfloat16 (``cpu_flags``, default ``/proc/cpuinfo``: no
      ``avx512_bf16`` / ``amx_bf16``): ``float32``, without measuring. There bfloat16 is emulated
      (oneDNN declines it; Eigen converts each element to float32 and back), which is far slower:
      on a 2-core AVX2 EPYC the forced probe measured mixed_bfloat16 at 0.08-0.10x float32's speed,
      and ``bench/cpu_kernels.py`` the 4-task ResNet50 train step (64 px, batch 32) at 0.12x.
    - No GPU, CPU with native bfloat16 or flags unknown: measure (``cpu_bfloat16_speedup``, ~2 s, once
      per process; ``cpu_speedup`` injects a ratio instead) and take ``mixed_bfloat16`` only if it is
      at least ``BFLOAT16_MIN_SPEEDUP`` (1.1x) faster; measured 1.26x on an avx512_bf16 machine.
      A probe that fails leaves ``float32``.

    Args:
        mode: ``auto`` (default; also for ``None``), ``float16``, ``bfloat16`` or ``off`` (case-insensitive).
        compute_capabilities: ``(major, minor)`` per GPU; ``None`` asks TensorFlow, ``[]`` means no GPU.
        cpu_flags: a set of CPU flag names; ``None`` reads ``/proc/cpuinfo``.
        cpu_speedup: a bfloat16/float32 speed ratio to use instead of measuring.

    Returns:
        A ``PrecisionChoice`` (``mode``, ``policy``, ``reason``, measured speedup or None).

    Raises:
        MtlError: an unknown mode.

    Example:
        >>> str(choose_mixed_precision("auto", compute_capabilities=[], cpu_flags={"avx2"}))
        'mixed precision auto: float32 (CPU has no native bfloat16: avx512_bf16/amx_bf16 absent)'
        >>> choose_mixed_precision("auto", [], cpu_flags={"amx_bf16"}, cpu_speedup=1.25).reason
        'measured 1.25x faster than float32 on this CPU'
    """
    if mode is None:
        mode = "auto"
    mode = str(mode).strip().lower()
    if mode not in MIXED_PRECISION_MODES:
        raise MtlError(f"unknown mixed-precision mode {mode!r}; choose one of: {', '.join(MIXED_PRECISION_MODES)}")
    if mode != "auto":
        return PrecisionChoice(mode, _POLICIES[mode], "as asked")
    if compute_capabilities is None:
        compute_capabilities = gpu_compute_capabilities()
    capabilities = [tuple(c) for c in compute_capabilities]
    if capabilities:
        lowest = min(capabilities)
        version = ".".join(map(str, lowest))
        if lowest >= (8, 0):
            reason = f"every GPU has compute capability >= 8.0 (lowest {version})"
            return PrecisionChoice(mode, "mixed_bfloat16", reason)
        return PrecisionChoice(mode, "mixed_float16", f"a GPU has compute capability {version} < 8.0: no fast bfloat16")
    if cpu_flags is None:
        cpu_flags = read_cpu_flags()
    native = cpu_has_native_bfloat16(cpu_flags) if cpu_flags is not None else None
    if native is False:
        # Arm lists its flag as plain "bf16" (and always has "asimd").
        absent = "bf16" if "asimd" in cpu_flags else "avx512_bf16/amx_bf16"
        return PrecisionChoice(mode, "float32", f"CPU has no native bfloat16: {absent} absent")
    if cpu_speedup is None:
        try:
            cpu_speedup = cpu_bfloat16_speedup(cpu_flags, force=True)
        except Exception as e:  # a probe failure must not stop training; float32 always works
            return PrecisionChoice(mode, "float32", f"bfloat16 probe failed: {type(e).__name__}: {e}")
    unknown = "" if native else "; CPU flags unknown"
    if cpu_speedup >= BFLOAT16_MIN_SPEEDUP:
        return PrecisionChoice(mode, "mixed_bfloat16",
                               f"measured {cpu_speedup:.2f}x faster than float32 on this CPU{unknown}", cpu_speedup)
    return PrecisionChoice(mode, "float32", f"mixed_bfloat16 measured {cpu_speedup:.2f}x float32's speed on this CPU, "
                                            f"below the {BFLOAT16_MIN_SPEEDUP:g}x needed{unknown}", cpu_speedup)


def mixed_precision_policy(mode: str = "auto", compute_capabilities=None, cpu_flags=None,
                           cpu_speedup: float | None = None) -> str:
    """The Keras dtype policy name for ``--mixed-precision auto|float16|bfloat16|off``.

    ``choose_mixed_precision(...).policy``; see there for how ``auto`` decides (GPU compute
    capability; on CPU, native bfloat16 flags and a measured speedup).

    Args:
        mode: ``auto``, ``float16``, ``bfloat16`` or ``off``.
        compute_capabilities: ``(major, minor)`` per GPU; ``None`` asks TensorFlow.
        cpu_flags: a set of CPU flag names; ``None`` reads ``/proc/cpuinfo``.
        cpu_speedup: a bfloat16/float32 speed ratio to use instead of measuring.

    Returns:
        ``"float32"``, ``"mixed_float16"`` or ``"mixed_bfloat16"``.

    Raises:
        MtlError: an unknown mode.

    Example:
        >>> mixed_precision_policy("auto", compute_capabilities=[(7, 0)])
        'mixed_float16'
        >>> mixed_precision_policy("bfloat16", compute_capabilities=[])
        'mixed_bfloat16'
        >>> mixed_precision_policy("auto", [], cpu_flags={"avx512_bf16"}, cpu_speedup=1.05)
        'float32'
    """
    return choose_mixed_precision(mode, compute_capabilities, cpu_flags, cpu_speedup).policy


def set_mixed_precision(mode: str = "auto", print_fn=None) -> str:
    """Set Keras' global dtype policy from ``mode`` (see ``choose_mixed_precision``); return its name.

    Call it before ``build_model``: layers take the policy that is global when they are created.
    Under ``mixed_float16`` Keras' ``compile`` wraps the optimizer in a ``LossScaleOptimizer`` itself;
    the task heads keep their outputs in float32. ``print_fn`` (e.g. ``print``) receives one line
    saying what was chosen and why, e.g. ``mixed precision auto: float32 (CPU has no native bfloat16:
    avx512_bf16/amx_bf16 absent)``.

    Args:
        mode: ``auto``, ``float16``, ``bfloat16`` or ``off``.
        print_fn: a callable taking one string (the choice and its reason), or ``None`` for silence.

    Returns:
        The policy name set (``"float32"``, ``"mixed_float16"`` or ``"mixed_bfloat16"``).

    Raises:
        MtlError: an unknown mode.

    Example:
        >>> set_mixed_precision("off", print_fn=print)
        mixed precision off: float32 (as asked)
        'float32'
    """
    choice = choose_mixed_precision(mode)
    keras.mixed_precision.set_global_policy(choice.policy)
    if print_fn is not None:
        print_fn(str(choice))
    return choice.policy
