"""Applications, written only against the public API of ``dragon_campaign``.

Each application package exposes ``Config`` (a pydantic model of its parameters) and
``run(config, pools, run_dir) -> dict`` (runs the campaign, returns a summary), and optionally
``default_pools(config)`` (the pools used when the configuration names none); the launcher finds them here.
"""

APPLICATIONS: dict[str, str] = {
    "ackley": "dragon_campaign.apps.ackley",
    "moldesign": "dragon_campaign.apps.moldesign",
    "streaming": "dragon_campaign.apps.streaming",
    "wave": "dragon_campaign.apps.wave",
}
DEFAULT_APPLICATION = "moldesign"
