//! "Did you mean" suggestions for misspelt keys, names and values.

/// The candidate closest to `input`, when it is close enough to be a likely typo.
pub fn closest<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|candidate| (strsim::jaro_winkler(input, candidate), candidate))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::closest;

    #[test]
    fn suggests_a_near_miss_and_nothing_for_a_stranger() {
        let keys = ["memory_mb", "timeout_seconds", "architecture"];
        assert_eq!(closest("memroy_mb", keys), Some("memory_mb"));
        assert_eq!(closest("timeout", keys), Some("timeout_seconds"));
        assert_eq!(closest("zebra", keys), None);
    }
}
