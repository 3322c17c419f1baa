"""CPU-heavy demo workers: pure-Python work that keeps one core busy.

Used by examples/cpu_parallel.yaml and by the benchmarks to show the pool's
speedup: each task holds the GIL of its own process, so N workers run N at once.
"""
from opflow.errors import PluginError
from opflow.plugin_base import Plugin


def count_primes(limit: int) -> int:
    """Primes below `limit`, by trial division: deliberately CPU-bound."""
    count = 0
    for n in range(2, limit):
        d = 2
        while d * d <= n:
            if n % d == 0:
                break
            d += 1
        else:
            count += 1
    return count


def spin(iterations: int) -> int:
    """A tight arithmetic loop of `iterations` steps; returns a checksum."""
    total = 0
    for i in range(iterations):
        total = (total + i * i) % 1_000_003
    return total


class PrimeCountPlugin(Plugin):
    """Count primes below config 'limit' (CPU-bound, pure Python)."""

    name = "prime_count"

    def run(self, config: dict, context: dict) -> dict:
        limit = config.get("limit", 200_000)
        if not isinstance(limit, int) or limit < 2:
            raise PluginError("config 'limit' must be a whole number >= 2")
        return {"limit": limit, "primes": count_primes(limit)}


class SpinPlugin(Plugin):
    """Spin a pure-Python loop for config 'iterations' steps (a fixed amount of CPU work)."""

    name = "spin"

    def run(self, config: dict, context: dict) -> dict:
        iterations = int(config.get("iterations", 5_000_000))
        return {"iterations": iterations, "checksum": spin(iterations)}


class SumResultsPlugin(Plugin):
    """Add up the 'primes' of every upstream prime_count task."""

    name = "sum_primes"

    def run(self, config: dict, context: dict) -> dict:
        parts = {k: v["primes"] for k, v in context.items() if k != "params" and isinstance(v, dict) and "primes" in v}
        return {"parts": len(parts), "total_primes": sum(parts.values())}
