"""The seed's example plugin: only its import line changed to opflow.plugin_base."""
from opflow.plugin_base import Plugin


class GreetPlugin(Plugin):
    """Say hello to config 'name' (default: world)."""

    name = "greet"

    def run(self, config: dict, context: dict) -> dict:
        name = config.get("name", "world")
        message = f"Hello, {name}!"
        return {"message": message}
