"""Monitoring: drift that does not cry wolf, performance before labels arrive, retraining triggers.

    DriftMonitor(...).fit(reference_df).check(window_df) -> dict   (drift.py; the drift.json content)
    DriftMonitor(...).fit_profile(profile).check_profile(window_profile) -> dict   (from mergeable profiles)
    check_files(...) / check_windows(...) -> Result                  (check.py; what the CLI calls)
    profile_layout / profile_partition / merge_profiles              (sketch.py; plain-JSON profiles)
    evaluate_triggers(result, cfg.monitor, model_age_days)          (triggers.py)
    run_retraining(fired, window_df, work_dir, steps)                (retrain.py)

stats.py holds the fast two-sample statistics, profile.py what is remembered of each reference
column, multivariate.py the domain-classifier test, performance.py / perfcheck.py realised and
label-free estimated accuracy, data.py file and prediction-log reading, logschema.py the prediction
log's columns (shared with trainwise.serve), reference.py the training reference stored with a
model, labels.py late labels joined on request id, report.py drift.json and report.html,
binned.py the statistics computed from profiles with their binning bounds, stream.py out-of-core
Parquet profiles and log windows (windows_stream.py / windows_memory.py judge them), commands.py the
`trainwise monitor` and `trainwise watch` verbs (argument parsing only). See docs/monitor.md.
"""
