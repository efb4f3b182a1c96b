"""The chaos suite (issue 15): faults injected for real, bad input through the CLI.

Here: `test_census.py` (every malformed input the suite knows: exit 2, one line, nothing
written), `test_kill.py` (driver SIGKILLs, a killed trial worker, damaged checkpoints, each
followed by `resume`) and `test_debris.py` (what a SIGKILLed process leaves). Faults whose test
sits beside the feature it exercises:

    S1  test_security.py::test_a_local_sweep_refuses_clients_without_its_token
    S2  test_security.py::test_a_planted_checkpoint_is_refused_and_runs_nothing,
        ::test_a_planted_searcher_state_is_refused_and_runs_nothing
    S3  test_mlflow_server.py::test_credentials_in_the_tracking_uri_are_kept_in_memory_only
    F1  test_signals.py::test_ctrl_c_after_every_trial_started_is_interrupted_not_stopped_early
    F3  test_sweep.py::test_a_failed_trial_that_finishes_after_resume_reaches_optuna
    F4  test_report.py::test_readers_use_the_newest_execution_that_ran_trials,
        test_sweep.py::test_resources_the_cluster_lacks_are_exit_2_before_any_run (also F13)
    F5  test_sweep.py::test_two_sweeps_of_one_file_in_one_workdir_both_finish_apart
    F6  test_signals.py::test_a_copied_or_moved_workdir_resumes_into_itself
    F11 test_method_contract.py::test_evaluate_reports_only_declared_metric_names
    F12 test_method_contract.py::test_class_names_with_mathtext_render_as_plain_text,
        ::test_a_failing_figure_is_logged_not_raised
    F15 test_sweep.py::test_a_corpus_the_method_cannot_split_is_exit_2_before_ray
    F16 test_corpus.py::test_a_declared_duration_the_audio_lacks_is_one_line_exit_2,
        test_features.py::test_audio_shorter_than_a_window_or_than_declared_is_refused
    F17 test_report.py::test_ui_serves_the_workdir_store
    Y34 test_sweep_spec.py::test_a_yaml_bomb_is_refused_before_it_expands

`tests/benchmarks/census_counts.py` classifies the census for any source tree (to compare
versions).
"""
