"""Progress of an optimisation: a bar on a terminal, plain lines in a log.

When standard error is a terminal the progress is a ``tqdm`` bar. Otherwise (a log file, CI, a
pipe) a bar's carriage returns make the log unreadable, so one line is written every
``every`` epochs (default: about 20 lines per run) and at the last epoch, with the losses, the
cost and the time left.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


class Progress:
    """Report epochs ``start .. total - 1`` of the optimisation called ``name``."""

    def __init__(
        self,
        name: str,
        start: int,
        total: int,
        enabled: bool = True,
        every: int | None = None,
        stream: TextIO | None = None,
        after_s: float = 0.0,
    ) -> None:
        self.name, self.start, self.total = name, start, total
        self.after_s = after_s  # seconds of work after the last epoch (the evaluation of the trained designs)
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.every = every if every is not None else max(1, total // 20)
        self.t0 = time.perf_counter()
        self.bar: Any = None
        if enabled and self.stream.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=start, desc=name, file=self.stream)

    def epoch(self, epoch: int, loss: dict[str, float], validation: float | None) -> None:
        """Record that ``epoch`` is done with these losses."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
            extra = {"then_evaluation": f"~{self.after_s:.0f} s"} if self.after_s else {}
            self.bar.set_postfix(
                task=f"{loss['task']:.3f}", budget=f"{loss['budget']:.3f}", cost=f"{loss['cost']:.0f}", **extra
            )
            return
        done = epoch + 1
        if done % self.every and done != self.total:
            return
        elapsed = time.perf_counter() - self.t0
        left = elapsed / max(done - self.start, 1) * (self.total - done) + self.after_s
        val = f" validation {validation:.4g}" if validation is not None else ""
        then = f", with ~{self.after_s:.0f} s of evaluation" if self.after_s else ""
        print(
            f"{self.name}: epoch {done}/{self.total} task {loss['task']:.4g} budget {loss['budget']:.3g}"
            f" cost {loss['cost']:.0f}{val} ({elapsed:.0f} s, ~{left:.0f} s left{then})",
            file=self.stream,
            flush=True,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
