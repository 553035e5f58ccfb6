"""synthscope.audits — Bias audits of text-to-image models: prompt sets, backends, annotators, metrics, reference data."""
