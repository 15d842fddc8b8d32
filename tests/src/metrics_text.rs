//! Reading samples out of a `/metrics` exposition (the OpenMetrics text StoryForge serves).

/// The value of `sample` — a metric name with its labels as exposed, such as
/// `storyforge_jobs{status="queued"}` — in `text`, or `None` when the text lacks it.
pub fn sample(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// Scrapes `url` and reads `name` from it; `None` when the endpoint does not answer or lacks it.
pub async fn scrape_sample(http: &reqwest::Client, url: &str, name: &str) -> Option<f64> {
    let text = http.get(url).send().await.ok()?.text().await.ok()?;
    sample(&text, name)
}
