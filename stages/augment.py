"""augment: add filtered synthetic rows to the train split, with lineage, and quarantine the rejects.

Three methods make candidates for the target classes (by default the classes below
`augment.class_floor` train rows): few-shot generation with the local instruction model,
back-translation through a pivot language, and random word deletion and swap. Every candidate is
normalised with the curate stage's rules. It must then pass length bounds, exact and near-duplicate
checks against every row of every split, a label-consistency check and a per-class cap. Rejected
candidates go to the quarantine table with their reason. Validation and test rows are read only
to keep near-copies of them out of train.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from stages.augmentation.config import AugmentConfig
from stages.augmentation.generators import build_generators
from stages.augmentation.normalise import build_normaliser
from stages.augmentation.pipeline import augment_train, check_train, target_labels
from stages.core import schema as S
from stages.core.cli import run_stage, stage_parser
from stages.core.io import read_table, write_json, write_table
from stages.core.params import parse_section, parse_seed, read_params

logger = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--train", required=True, help="Parquet table of train rows (the split stage's)")
    parser.add_argument("--validation", required=True, help="Parquet table of validation rows")
    parser.add_argument("--test", required=True, help="Parquet table of test rows")
    parser.add_argument("--base-lm", required=True, help="folder of the prepared instruction model")
    parser.add_argument(
        "--out", required=True, help="Parquet table of real train rows plus accepted new rows"
    )
    parser.add_argument("--quarantine", required=True, help="Parquet table of rejected candidates")
    parser.add_argument("--lineage", required=True, help="Parquet table of (new row, parent row) pairs")
    parser.add_argument("--metrics", required=True, help="JSON metrics file")
    args = parser.parse_args(argv)

    params = read_params(args.params)
    seed = parse_seed(params)
    config = parse_section(params, "augment", AugmentConfig)
    normalise = build_normaliser(params)

    train = read_table(args.train)
    check_train(train, args.train)
    other_splits = {"validation": read_table(args.validation), "test": read_table(args.test)}

    began = time.perf_counter()
    targets = target_labels(train, config) if config.enabled else []
    generators, _ = build_generators(config, params, args.base_lm, seed, has_targets=bool(targets))
    result = augment_train(train, other_splits, config, seed, generators, normalise)
    # The duration is logged, not kept in the metrics, so that equal runs write equal metrics.
    seconds = time.perf_counter() - began

    write_table(result.train, args.out)
    columns = [*S.ALL_COLUMNS, *[name for name in result.new_rows.columns if name not in S.ALL_COLUMNS]]
    write_table(result.quarantine.frame(columns), args.quarantine)
    write_table(result.lineage, args.lineage)
    write_json(result.metrics, args.metrics)
    logger.info(
        "augment: %d real rows + %d new rows (%d candidates rejected) in %.1f s",
        result.metrics["real_rows"],
        result.metrics["accepted"],
        result.metrics["rejected"],
        seconds,
    )


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
