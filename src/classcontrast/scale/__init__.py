"""Explanations of a whole dataset as tables: one row per (image, unit, target, contrast, method), built from
`Explanation.rows`, in one Arrow schema (`classcontrast.scale.table`) that every Parquet file of a run shares; a
stage that explains a batch of decoded images (`classcontrast.scale.stage.Explain`, Ray Data's ``map_batches``
callable class, usable without Ray); a resumable writer (`classcontrast.scale.store`); and the run itself on an
engine, local or Ray (`classcontrast.scale.run`)."""
