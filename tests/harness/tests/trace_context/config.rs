//! Configuration as Envoy loads it: an invalid field is refused by name.

use e2e_harness::*;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_is_rejected_naming_the_field() {
    // Only validated: no upstream is needed.
    let yaml = validation_yaml(trace_filter(Some(r#"{"samplingRatio": 2}"#)));
    let err = validate_yaml(&yaml).expect_err("Envoy must refuse the configuration");
    assert!(
        err.contains("trace-context: invalid configuration: field `samplingRatio`: must be between 0.0 and 1.0"),
        "{err}"
    );
}
