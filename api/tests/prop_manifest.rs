//! Property tests of manifest parsing and validation: any text, and any
//! Function-shaped manifest with arbitrary field values, is parsed and
//! validated without a panic; what validation accepts keeps its invariants.

use flint_api::{parse_functions, validate};
use proptest::prelude::*;

/// A scalar YAML value of some kind, including ones of the wrong type.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        (0u32..200).prop_map(|v| v.to_string()),
        "[0-9]{1,4}(ms|s|m|h)",
        "[a-zA-Z0-9 *,/-]{0,12}".prop_map(|s| format!("\"{s}\"")),
        Just("null".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        Just("true".to_owned()),
    ]
}

/// A Function manifest whose fields take arbitrary values.
fn manifest() -> impl Strategy<Value = String> {
    (
        "[a-z][a-z0-9-]{0,70}",
        prop::collection::vec(value(), 19),
        prop::collection::vec((prop::option::of("[a-z]-0000[1-3]"), value(), prop::option::of("[a-zA-Z-]{1,8}")), 0..4),
    )
        .prop_map(|(name, v, traffic)| {
            let traffic: String = traffic
                .iter()
                .map(|(rev, percent, tag)| {
                    let mut t = match rev {
                        Some(r) => format!("    - revision: {r}\n"),
                        None => "    - latestRevision: true\n".to_owned(),
                    };
                    t.push_str(&format!("      percent: {percent}\n"));
                    if let Some(tag) = tag {
                        t.push_str(&format!("      tag: {tag}\n"));
                    }
                    t
                })
                .collect();
            format!(
                "apiVersion: flint.dev/v1alpha1\nkind: Function\nmetadata:\n  name: {name}\nspec:\n  image: {}\n  command: [python3, app.py]\n  port: {}\n  timeoutSeconds: {}\n  concurrency: {}\n  scale:\n    min: {}\n    max: {}\n    initial: {}\n    metric: {}\n    target: {}\n    targetUtilization: {}\n    stableWindow: {}\n    panicWindowPercent: {}\n    panicThresholdPercent: {}\n    scaleDownDelay: {}\n    keepAlive: {}\n    scaleToZeroGracePeriod: {}\n  schedules:\n    - {{cron: {}, timezone: {}}}\n  async: {{maxRetries: {}}}\n  traffic:\n{traffic}",
                v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13], v[14], v[15], v[16], v[17], v[18]
            )
        })
}

proptest! {
    #[test]
    fn any_text_parses_or_fails_without_panic(text in any::<String>()) {
        if let Ok(functions) = parse_functions(&text) {
            for f in &functions {
                let _ = validate(f);
            }
        }
    }

    #[test]
    fn any_function_shaped_manifest_parses_and_validates_without_panic(text in manifest()) {
        if let Ok(functions) = parse_functions(&text) {
            for f in &functions {
                if validate(f).is_ok() {
                    let scale = &f.spec.scale;
                    prop_assert!(scale.min <= scale.initial && scale.initial <= scale.max, "{text}");
                    if !f.spec.traffic.is_empty() {
                        let sum: u32 = f.spec.traffic.iter().map(|t| t.percent).sum();
                        prop_assert_eq!(sum, 100, "{}", text);
                    }
                }
            }
        }
    }

    #[test]
    fn several_documents_with_noise_never_panic(
        docs in prop::collection::vec(prop_oneof![manifest(), any::<String>()], 1..4),
    ) {
        let _ = parse_functions(&docs.join("\n---\n"));
    }
}
