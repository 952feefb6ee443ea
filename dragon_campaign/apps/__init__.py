"""Applications, written only against the public API of ``dragon_campaign``.

Each application package exposes ``Config`` (a pydantic model of its parameters) and
``run(config, pools, run_dir) -> dict`` (runs the campaign, returns a summary); the launcher finds them here.
"""

APPLICATIONS: dict[str, str] = {
    "streaming": "dragon_campaign.apps.streaming",
    "wave": "dragon_campaign.apps.wave",
}
DEFAULT_APPLICATION = "streaming"
