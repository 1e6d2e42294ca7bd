"""The speed evidence the recommendation may use, and when it may claim nothing (docs/bench.md, "Recommendation").

In order of preference:

1. the timing phase's paired per-round ratios to the control (`speed_ratio_vs_control`: median and
   95% order-statistic interval), when every candidate has one: pairing cancels the drift of a
   shared machine, so no floor is added;
2. when the timing phase did not run (bench.timing_rounds = 0, or the time budget left too little),
   or some candidate was not timed there, each training run's timed steps: 95% order-statistic
   intervals of their medians, with the speed noise floor (how far the control's other seeds'
   median step lies from the control's: the same work timed at another moment);
3. none: the timing phase ran and says the machine was too busy for any ratio ("timings
   unreliable: load 4.8 on 2 cores"). Then no variant is faster than another as far as the bench
   can tell, and no speed figure is claimed, neither from the rounds nor from the training runs
   (those ran on the same busy machine, minutes apart: the "80x slower" of issue 15).

Points and intervals are step times in one unit per source: ratios to the control (the control is
1) for the timing phase, milliseconds for the training runs. Lower is faster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import median

from scipy import stats

from trainwise.bench.runner import FINISHED

PAIRED, TRAINING = "timing phase (paired rounds)", "training runs' timed steps"


def median_interval(samples: list[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """Distribution-free interval of the median from order statistics (binomial(n, 1/2) ranks).

    >>> median_interval(list(range(1, 21)))
    (6, 15)
    """
    x = sorted(samples)
    n = len(x)
    if n == 0:
        return None
    k = int(stats.binom.ppf((1 - confidence) / 2, n, 0.5))  # ranks below k cover at most (1-confidence)/2
    return (x[max(k - 1, 0)], x[min(n - k, n - 1)]) if k >= 1 else (x[0], x[-1])


@dataclass
class SpeedEvidence:
    source: str  # PAIRED, TRAINING, or "none"
    point: dict[str, float] = field(default_factory=dict)  # config hash -> step time (in the source's unit)
    interval: dict[str, tuple[float, float]] = field(default_factory=dict)
    floor: float = 0.0  # relative drift between two runs of the same work (TRAINING only)
    unreliable: str | None = None  # why no speed is claimed (source "none")
    not_quotable: dict[str, str] = field(
        default_factory=dict
    )  # config hash -> why its figure is not quoted (an interval too wide)

    def has(self, row: dict) -> bool:
        return row["config_hash"] in self.point

    def quotable(self, *rows: dict) -> bool:
        """Whether a figure comparing these rows may be printed: each has a point, none an interval
        too wide to quote (bench.max_ratio_ci). Decisions still use the intervals, however wide."""
        return all(self.has(r) and r["config_hash"] not in self.not_quotable for r in rows)

    def speedup(self, fast: dict, slow: dict) -> float:
        """How many times faster `fast` is than `slow` (point estimates)."""
        return self.point[slow["config_hash"]] / self.point[fast["config_hash"]]

    def speedup_interval(self, fast: dict, slow: dict) -> list[float]:
        (f_lo, f_hi), (s_lo, s_hi) = self.interval[fast["config_hash"]], self.interval[slow["config_hash"]]
        return [s_lo / f_hi, s_hi / f_lo]

    def clearly_faster(self, fast: dict, slow: dict, min_gain: float) -> bool:
        """The lower bound of fast's speed over slow's exceeds 1 + min_gain, beyond what two runs of
        the same config differ by (the floor). Never, without evidence."""
        if not (self.has(fast) and self.has(slow)):
            return False
        return self.speedup_interval(fast, slow)[0] > (1 + min_gain) * (1 + self.floor)


def is_candidate(row: dict) -> bool:
    """A finished trainwise variant whose speed means something here (not emulated fp8)."""
    return (
        row["kind"] == "trainwise"
        and row["status"] in FINISHED
        and not row.get("emulated")
        and bool(row.get("median_step_ms"))
    )


def speed_evidence(rows: list[dict], timing: dict | None) -> SpeedEvidence:
    """What the recommendation may compare speeds by (see the module's docstring). `timing`:
    the timing phase's verdict {'reliable', 'unreliable_reason'}, None when it did not run."""
    if timing is not None and not timing.get("reliable"):
        return SpeedEvidence("none", unreliable=timing.get("unreliable_reason") or "timings unreliable")
    control = next(r for r in rows if r["is_control"])
    cands = [r for r in rows if is_candidate(r)]
    ratios = {r["config_hash"]: r.get("speed_ratio_vs_control") or {} for r in cands if r is not control}
    if timing is not None and all(x.get("ci95") and x.get("median") for x in ratios.values()):
        point = {h: x["median"] for h, x in ratios.items()} | {control["config_hash"]: 1.0}
        interval = {h: tuple(x["ci95"]) for h, x in ratios.items()} | {control["config_hash"]: (1.0, 1.0)}
        return SpeedEvidence(
            PAIRED,
            point,
            interval,
            not_quotable={h: x.get("note") or "timings unreliable" for h, x in ratios.items() if not x.get("reliable")},
        )
    point, interval = {}, {}
    for r in cands:
        ms = r.get("train_median_step_ms") or r["median_step_ms"]
        point[r["config_hash"]] = ms
        interval[r["config_hash"]] = median_interval(r.get("step_ms_samples") or []) or (ms, ms)
    return SpeedEvidence(TRAINING, point, interval, speed_floor(rows))


def speed_floor(rows: list[dict]) -> float:
    """How far the median step of the control's runs with other seeds lies from the control's own
    (relative): the same work timed at another moment of a shared machine. 0 without seeds."""
    control = next(r for r in rows if r["is_control"])
    seeds = [
        r["step_ms_samples"]
        for r in rows
        if r.get("kind") == "control-seed" and r["status"] in FINISHED and r.get("step_ms_samples")
    ]
    if not control.get("step_ms_samples") or not seeds:
        return 0.0
    m = median(control["step_ms_samples"])
    return max(max(median(s), m) / min(median(s), m) - 1 for s in seeds)
