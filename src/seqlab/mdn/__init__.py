"""Family 2: SpacingMDN (E0, PREFIX, POSTFIX): mixture maths, models, engine task, evaluation
against baselines, and the A-K memory diagnostics."""
