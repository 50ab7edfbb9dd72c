"""The benchmark's trivial job: Klio's built-in steps only; ``run`` passes messages through."""


def run(pcoll, config):
    return pcoll
