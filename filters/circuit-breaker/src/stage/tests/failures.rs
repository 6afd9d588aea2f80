//! Host failures: every refused call is tolerated, none panics, a refused rejection never leaves the
//! request hanging, and failing shared data decides nothing.

use super::*;
use filter_common::fake_host::Op;
use filter_common::shared::Fault;

const EVERY_OP: [Op; 20] = [
    Op::HeaderMap,
    Op::Header,
    Op::SetHeader,
    Op::AddHeader,
    Op::RemoveHeader,
    Op::Property,
    Op::SetProperty,
    Op::Buffer,
    Op::Now,
    Op::GetSharedData,
    Op::SetSharedData,
    Op::DefineMetric,
    Op::IncrementMetric,
    Op::RecordMetric,
    Op::SendLocalResponse,
    Op::ResumeRequest,
    Op::ResumeResponse,
    Op::SetTickPeriod,
    Op::DispatchHttpCall,
    Op::Log,
];

#[test]
fn a_refused_rejection_resumes_the_request() {
    let (host, plugin) = configure(&breaker(r#""consecutiveFailures": 3"#));
    trip(&host, &plugin);
    host.clear_calls();
    host.fail_next(Op::SendLocalResponse);
    let (stream, action) = request(&host, &plugin, &[]);
    assert_eq!(action, Action::Pause, "the host was asked to stop");
    assert_eq!(host.count(Op::ResumeRequest), 1, "and to go on");
    assert!(!stream.rejected());
    end(&host, &plugin, stream);
    assert_eq!(calls(&host, "pay", "failure"), 3, "not recorded");
}

#[test]
fn failing_shared_data_admits_and_decides_nothing() {
    let (host, plugin) = configure(&breaker(r#""consecutiveFailures": 2"#));
    host.fail_always(Op::GetSharedData);
    for _ in 0..4 {
        assert_eq!(call(&host, &plugin, "503"), Action::Continue);
    }
    host.recover(Op::GetSharedData);
    assert_eq!(transitions(&host, "pay", "open"), 0);
    assert_eq!(call(&host, &plugin, "200"), Action::Continue);
}

#[test]
fn a_lost_race_on_the_record_is_retried() {
    let (host, plugin) = configure(&breaker(r#""consecutiveFailures": 3"#));
    trip(&host, &plugin);
    host.advance_clock(std::time::Duration::from_secs(5));
    // Another worker writes the record between this worker's read and its write (three times).
    let key = plugin.keys.state("pay", plugin_slot(&host, &plugin));
    for _ in 0..3 {
        host.shared().inject(&key, Fault::CasMismatch);
    }
    let (probe, action) = request(&host, &plugin, &[]);
    assert_eq!(action, Action::Continue);
    assert!(probe.call().unwrap().probe);
    assert_eq!(transitions(&host, "pay", "half_open"), 1);
    end(&host, &plugin, probe);
}

/// The slot of breaker `pay`'s one key: the one whose record exists.
fn plugin_slot(host: &FakeHost, plugin: &Plugin) -> u32 {
    (0..100)
        .find(|slot| {
            host.shared()
                .value(&plugin.keys.state("pay", *slot))
                .is_some()
        })
        .unwrap()
}

/// Every kind of host call failing, always or once, at any point of a call's life: nothing panics and
/// the request is never left paused without an answer.
#[test]
fn no_host_failure_panics_or_leaves_a_request_hanging() {
    let configs = [
        "{}".to_string(),
        breaker(r#""consecutiveFailures": 1, "maxConcurrentCalls": 1, "maxPushback": "5s""#),
        breaker(r#""consecutiveFailures": 1, "mode": "dryRun", "maxConcurrentCalls": 1"#),
        breaker(r#""mode": "forcedOpen""#),
    ];
    for json in &configs {
        for op in EVERY_OP {
            for always in [true, false] {
                let (host, plugin) = configure(json);
                host.script_property(&["xds", "cluster_name"], b"pay");
                let fail = || {
                    if always {
                        host.fail_always(op)
                    } else {
                        host.fail_next(op)
                    }
                };
                fail();
                for round in 0..4 {
                    if round == 2 {
                        fail();
                    }
                    host.clear_calls();
                    let (mut stream, action) = grpc_request(&host, &plugin);
                    if action == Action::Pause {
                        let answered = (stream.rejected()
                            && host.count(Op::SendLocalResponse) == 1)
                            || host.count(Op::ResumeRequest) == 1;
                        assert!(answered, "{json} {op:?}: paused with no answer");
                    }
                    host.script_headers(RESP, &[(":status", "503"), ("retry-after", "1")]);
                    stream.on_response_headers(&host, &plugin);
                    host.script_headers(TRAILERS, &[("grpc-status", "14")]);
                    stream.on_response_trailers(&host, &plugin);
                    stream.on_log(&host, &plugin);
                    stream.on_drop(&host, &plugin);
                    plugin.on_tick(&host);
                    host.advance_clock(std::time::Duration::from_secs(2));
                }
            }
        }
    }
}

#[test]
fn a_refused_clock_reads_zero_and_the_call_still_counts() {
    let (host, plugin) = configure(&breaker(""));
    host.fail_always(Op::Now);
    assert_eq!(call(&host, &plugin, "200"), Action::Continue);
    assert_eq!(calls(&host, "pay", "success"), 1);
}

#[test]
fn a_refused_dry_run_mark_costs_only_the_mark() {
    let (host, plugin) = configure(&breaker(r#""consecutiveFailures": 3, "mode": "dryRun""#));
    trip(&host, &plugin);
    host.fail_next(Op::SetHeader);
    let (mut stream, _) = request(&host, &plugin, &[]);
    respond(&host, &plugin, &mut stream, &[(":status", "200")]);
    assert!(host.header_values(RESP, STATUS_HEADER).is_empty());
    end(&host, &plugin, stream);
    assert_eq!(calls(&host, "pay", "would_reject"), 1);
}
