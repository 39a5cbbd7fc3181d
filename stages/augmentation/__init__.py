"""Parts of the augment and augment_effect stages: candidate generation, filters, lineage and effect.

`pipeline.augment_train` makes candidates with the methods (`fewshot`, `backtranslation`,
`edits`), runs them through `filters` and returns the augmented train rows, the quarantine and
a lineage table. `effect.run_effect` measures what that buys in a low-resource setting.
"""
