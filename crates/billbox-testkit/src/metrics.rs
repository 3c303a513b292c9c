//! Reading billbox's Prometheus page.

/// The value of a Prometheus sample whose name and labels match `series`
/// (e.g. `billbox_records_received_total{port="p"}`), if present.
pub fn metric(page: &str, series: &str) -> Option<f64> {
    let (name, labels) = series
        .split_once('{')
        .map_or((series, ""), |(n, l)| (n, l.trim_end_matches('}')));
    let want: Vec<&str> = labels.split(',').filter(|l| !l.is_empty()).collect();
    page.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (head, value) = l.rsplit_once(' ')?;
        let (n, ls) = head
            .split_once('{')
            .map_or((head, ""), |(n, l)| (n, l.trim_end_matches('}')));
        (n == name && want.iter().all(|w| ls.split(',').any(|x| x == *w)))
            .then(|| value.parse().ok())
            .flatten()
    })
}

/// The sum of a metric over all its series.
pub fn sum_metric(page: &str, name: &str) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "# TYPE x counter\nx{port=\"p\",a=\"1\"} 3\nx{port=\"q\"} 4\nxy 9\ny 2.5\n";

    #[test]
    fn samples_are_found_by_name_and_labels_and_summed() {
        assert_eq!(metric(PAGE, "x{port=\"p\"}"), Some(3.0));
        assert_eq!(metric(PAGE, "x{port=\"r\"}"), None);
        assert_eq!(metric(PAGE, "y"), Some(2.5));
        assert_eq!(sum_metric(PAGE, "x"), 7.0);
    }
}
