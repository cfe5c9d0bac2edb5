//! Reading schema v1: its summaries converted to v2 on load, so every command reads one model.

use super::{PerFolio, SCHEMA, SCHEMA_V1, Summary, Totals, per_s};

impl Summary {
    /// Convert a summary read from a file of schema v1, where `flushes` and
    /// `flushes_per_reclaimed_folio` counted deferred flushes only, immediate ones were
    /// `unbatched_flushes` (read into `immediate_flushes`), and folios were base pages (so
    /// `folios_exact` stays false).
    pub fn upgrade(&mut self) {
        if self.schema != SCHEMA_V1 {
            return;
        }
        fn fix(t: &mut Totals) -> PerFolio {
            t.deferred_flushes = t.flushes;
            // Saturating: the counts come from a file.
            t.flushes = t.flushes.saturating_add(t.immediate_flushes);
            t.per_folio()
        }
        self.per_folio = fix(&mut self.totals);
        for c in self.by_context.values_mut() {
            c.per_folio = fix(&mut c.totals);
        }
        for c in &mut self.by_cgroup {
            c.per_folio = fix(&mut c.totals);
        }
        // A file without a duration keeps the rate it was written with.
        if self.duration_s > 0.0 {
            self.rates.flushes_per_s = per_s(self.totals.flushes, self.duration_s);
        }
        self.folios_exact = false;
        self.schema = SCHEMA.to_string();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::summary::tests::anon_summary;

    #[test]
    fn v1_files_are_read_with_immediate_flushes_added_to_the_headline() {
        let mut s = anon_summary();
        s.schema = SCHEMA_V1.into();
        // As v1 wrote it: flushes = dirty + batch only, ratio of those.
        s.totals.immediate_flushes = 50;
        s.totals.flushes = s.totals.dirty_flushes + s.totals.batch_flushes;
        s.folios_exact = true;
        let deferred = s.totals.flushes;
        s.upgrade();
        assert_eq!(s.schema, SCHEMA);
        assert_eq!(s.totals.deferred_flushes, deferred);
        assert_eq!(s.totals.flushes, deferred + 50);
        let pf = &s.per_folio;
        let sum = pf.deferred_flushes_per_reclaimed_folio.unwrap()
            + pf.immediate_flushes_per_reclaimed_folio.unwrap();
        assert!((pf.flushes_per_reclaimed_folio.unwrap() - sum).abs() < 1e-12);
        assert!(!s.folios_exact, "v1 folios were pages");
        // Already v2: untouched.
        let before = s.clone();
        s.upgrade();
        assert_eq!(s, before);
    }

    /// A v1 file whose counts add up past `u64::MAX` (an overflow panic with overflow checks
    /// on, found fuzzing the recording reader).
    #[test]
    fn v1_counts_past_the_maximum_saturate() {
        let mut s = anon_summary();
        s.schema = SCHEMA_V1.into();
        s.totals.flushes = u64::MAX;
        s.totals.immediate_flushes = 2;
        s.upgrade();
        assert_eq!(s.totals.flushes, u64::MAX);
    }
}
