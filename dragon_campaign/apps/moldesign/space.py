"""The search space: the bundled QM9-like molecules (see ``.enumeration``) or a user's file of SMILES.

``python -m dragon_campaign.apps.moldesign.space`` regenerates the bundled file.
"""

from __future__ import annotations

import argparse
from functools import cache
from pathlib import Path

BUNDLED_SPACE = Path(__file__).parent / "data" / "search_space.smi"


@cache
def load_search_space(path: str | None = None) -> tuple[str, ...]:
    """The bundled space, or a user's file of SMILES (one a line; blank lines and ``#`` comments skipped)."""
    source = Path(path) if path else BUNDLED_SPACE
    if not source.exists():
        raise FileNotFoundError(f"No search space at {source}" + ("" if path else ": regenerate it with python -m dragon_campaign.apps.moldesign.space"))
    lines = (line.split()[0] for line in source.read_text().splitlines() if line.strip() and not line.startswith("#"))
    return tuple(lines)


def main() -> None:
    """Regenerate the bundled search space (``python -m dragon_campaign.apps.moldesign.space``)."""
    parser = argparse.ArgumentParser(description="Regenerate the bundled search space")
    parser.add_argument("--output", default=str(BUNDLED_SPACE))
    output = Path(parser.parse_args().output)
    from dragon_campaign.apps.moldesign.enumeration import generate_search_space  # RDKit: only to regenerate

    molecules = generate_search_space()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(molecules) + "\n")
    print(f"Wrote {len(molecules):,} molecules to {output}")


if __name__ == "__main__":
    main()
