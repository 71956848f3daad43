"""Built-in benchmarks: configurations the package ships (``configs/*.toml``), each a scene, a
task and human designs. ``mutomo tasks`` lists them; ``mutomo optimise NAME`` runs one."""

from mutomo.io.config import builtin_configs

__all__ = ["builtin_configs", "load_benchmark"]


def load_benchmark(name: str):  # -> Problem (imported lazily: benchmarks sit above optimise)
    """The :class:`~mutomo.optimise.Problem` of the built-in benchmark ``name``.

    Example:
        >>> problem = load_benchmark("ladle_furnace")
        >>> problem.task.kind, sorted(problem.designs)
        ('regression', ['human_acceptance', 'human_resolution', 'poor'])
    """
    from mutomo.io.config import load_config
    from mutomo.optimise.problem import build_problem

    return build_problem(load_config(name))
