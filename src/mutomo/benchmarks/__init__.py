"""Benchmark tasks: volumes with known answers, built-in designs, and how to infer the answer."""

from mutomo.benchmarks.ladle_furnace import LadleFurnace
from mutomo.optimise.task import Task, predict_volume

TASKS = {"ladle_furnace": LadleFurnace}

__all__ = ["TASKS", "LadleFurnace", "Task", "predict_volume"]
