//! The Prometheus text parser of the autoscaler's `direct` source, which
//! reads every gateway's `/metrics`: any text must give readings or an
//! error, never a panic. What it reads must agree with itself: the totals
//! it returns are the scrape's, and a scrape it could read once it reads
//! the same way again.
#![no_main]

use flint_operator::autoscaler::source::direct::{parse_scrape, parse_totals};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let scraped = parse_scrape(&text);
    let totals = parse_totals(&text);
    match (&scraped, &totals) {
        (Ok(scraped), Ok(totals)) => {
            assert_eq!(scraped.totals.len(), totals.len());
            for (key, t) in totals {
                let s = &scraped.totals[key];
                // NaN is not equal to itself: compare the bits.
                assert_eq!(s.requests.to_bits(), t.requests.to_bits());
                assert_eq!(
                    s.concurrency_seconds.to_bits(),
                    t.concurrency_seconds.to_bits()
                );
            }
        }
        (Err(_), Err(_)) => {}
        _ => panic!("parse_scrape and parse_totals disagree: {scraped:?} / {totals:?}"),
    }
});
