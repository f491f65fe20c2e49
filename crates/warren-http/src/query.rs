//! List endpoints' query parameters, as RabbitMQ's management plugin reads them: `name`
//! (a case-insensitive substring, or a regular expression with `use_regex=true`), `sort`
//! (a dotted field) and `sort_reverse`, `columns` (dotted paths that prune each item),
//! `disable_stats` and `enable_queue_totals`, and `page`/`page_size` (default 100, at most
//! 500), which switch the answer from a bare array to the paged envelope.

use std::cmp::Ordering;
use std::collections::HashMap;

use serde_json::{json, Map, Value};

use crate::error::{ApiError, ApiResult};

const DEFAULT_PAGE_SIZE: u64 = 100;
const MAX_PAGE_SIZE: u64 = 500;

#[derive(Debug, Default, Clone)]
pub struct ListQuery {
    pub page: Option<u64>,
    pub page_size: u64,
    pub name: Option<String>,
    pub use_regex: bool,
    pub sort: Option<String>,
    pub sort_reverse: bool,
    pub columns: Option<Vec<String>>,
    pub disable_stats: bool,
    pub enable_queue_totals: bool,
}

fn flag(params: &HashMap<String, String>, key: &str) -> bool {
    params.get(key).is_some_and(|v| v == "true")
}

impl ListQuery {
    pub fn parse(params: &HashMap<String, String>) -> ApiResult<ListQuery> {
        let unparsable = || ApiError::bad_request("Pagination parameters are invalid");
        let number = |key: &str| -> ApiResult<Option<u64>> {
            params
                .get(key)
                .map(|p| p.parse::<u64>().map_err(|_| unparsable()))
                .transpose()
        };
        let page = number("page")?;
        let page_size = number("page_size")?;
        // RabbitMQ 3.10: without `page` nothing is paged (nor is `page_size` checked).
        if let Some(n) = page {
            let size_ok = page_size.is_none_or(|s| (1..=MAX_PAGE_SIZE).contains(&s));
            if n == 0 || !size_ok {
                let size = page_size.map_or("undefined".to_string(), |s| s.to_string());
                return Err(ApiError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "invalid_pagination_parameters",
                    format!("Invalid pagination parameters: page number {n}, page size {size}"),
                ));
            }
        }
        let page_size = page_size
            .unwrap_or(DEFAULT_PAGE_SIZE)
            .clamp(1, MAX_PAGE_SIZE);
        Ok(ListQuery {
            page,
            page_size,
            name: params.get("name").filter(|n| !n.is_empty()).cloned(),
            use_regex: flag(params, "use_regex"),
            sort: params.get("sort").filter(|s| !s.is_empty()).cloned(),
            sort_reverse: flag(params, "sort_reverse"),
            columns: params
                .get("columns")
                .filter(|c| !c.is_empty())
                .map(|c| c.split(',').map(str::to_string).collect()),
            disable_stats: flag(params, "disable_stats"),
            enable_queue_totals: flag(params, "enable_queue_totals"),
        })
    }

    /// Whether statistics (rates, counters) are wanted in the items.
    pub fn stats(&self) -> bool {
        !self.disable_stats
    }

    /// Message counts are wanted: statistics on, or `enable_queue_totals`.
    pub fn queue_totals(&self) -> bool {
        !self.disable_stats || self.enable_queue_totals
    }

    /// Filters, sorts, pages and prunes `items`, ordered by `default_sort` fields when no
    /// `sort` is given.
    pub fn respond(&self, items: Vec<Value>, default_sort: &[&str]) -> ApiResult<Value> {
        self.respond_with(
            items,
            |v| {
                v.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            },
            |a, b| match &self.sort {
                Some(field) => compare(lookup(a, field), lookup(b, field)),
                None => match_default(a, b, default_sort),
            },
            |v| v.clone(),
        )
    }

    /// As [`ListQuery::respond`] over objects that are turned into JSON only when they are
    /// on the page asked for: without `sort`, the list is ordered with `by` (the default
    /// order), filtered by `name_of`, and only the page's items are built. With `sort` (a
    /// field of the JSON), every item is built first.
    pub fn respond_lazy<T>(
        &self,
        items: Vec<T>,
        name_of: impl Fn(&T) -> String,
        by: impl Fn(&T, &T) -> Ordering,
        build: impl Fn(&T) -> Value,
    ) -> ApiResult<Value> {
        if let Some(field) = &self.sort {
            let built: Vec<Value> = items.iter().map(build).collect();
            return self.respond_with(
                built,
                |v| {
                    v.get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                },
                |a, b| compare(lookup(a, field), lookup(b, field)),
                |v| v.clone(),
            );
        }
        self.respond_with(items, name_of, by, build)
    }

    fn respond_with<T>(
        &self,
        mut items: Vec<T>,
        name_of: impl Fn(&T) -> String,
        by: impl Fn(&T, &T) -> Ordering,
        build: impl Fn(&T) -> Value,
    ) -> ApiResult<Value> {
        let total = items.len() as u64;
        // RabbitMQ 3.10: the name filter applies to paged requests only.
        if let (Some(filter), Some(_)) = (&self.name, self.page) {
            let matcher = NameFilter::new(filter, self.use_regex)?;
            items.retain(|item| matcher.matches(&name_of(item)));
        }
        items.sort_by(&by);
        if self.sort_reverse {
            items.reverse();
        }
        let filtered = items.len() as u64;
        let Some(page) = self.page else {
            return Ok(Value::Array(
                self.prune_all(items.iter().map(build).collect()),
            ));
        };
        let page_count = filtered.div_ceil(self.page_size);
        if page > page_count.max(1) {
            return Err(ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "page_out_of_range",
                format!(
                    "Page out of range, page: {page} page size: {}, len: {filtered}",
                    self.page_size
                ),
            ));
        }
        let start = ((page - 1) * self.page_size) as usize;
        let page_items: Vec<Value> = items
            .iter()
            .skip(start)
            .take(self.page_size as usize)
            .map(build)
            .collect();
        let item_count = page_items.len();
        Ok(json!({
            "filtered_count": filtered,
            "item_count": item_count,
            "items": self.prune_all(page_items),
            "page": page,
            "page_count": page_count,
            "page_size": self.page_size,
            "total_count": total,
        }))
    }

    fn prune_all(&self, items: Vec<Value>) -> Vec<Value> {
        match &self.columns {
            None => items,
            Some(columns) => items.iter().map(|i| prune(i, columns)).collect(),
        }
    }
}

enum NameFilter {
    Substring(String),
    Regex(regex::Regex),
}

impl NameFilter {
    fn new(filter: &str, use_regex: bool) -> ApiResult<NameFilter> {
        if use_regex {
            regex::RegexBuilder::new(filter)
                .case_insensitive(true)
                .build()
                .map(NameFilter::Regex)
                .map_err(|_| ApiError::bad_request("Pagination parameters are invalid"))
        } else {
            Ok(NameFilter::Substring(filter.to_lowercase()))
        }
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            NameFilter::Substring(s) => name.to_lowercase().contains(s.as_str()),
            NameFilter::Regex(r) => r.is_match(name),
        }
    }
}

fn match_default(a: &Value, b: &Value, fields: &[&str]) -> Ordering {
    fields
        .iter()
        .map(|f| compare(lookup(a, f), lookup(b, f)))
        .find(|o| *o != Ordering::Equal)
        .unwrap_or(Ordering::Equal)
}

/// The value at a dotted path (`message_stats.publish`).
fn lookup<'a>(item: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(item, |v, key| v.get(key))
}

fn compare(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        _ => Ordering::Equal,
    }
}

/// Keeps only the dotted `columns` of an item.
fn prune(item: &Value, columns: &[String]) -> Value {
    let mut out = Map::new();
    for column in columns {
        let mut parts = column.split('.').peekable();
        let mut src = item;
        let mut dst = &mut out;
        while let Some(key) = parts.next() {
            let Some(v) = src.get(key) else { break };
            if parts.peek().is_none() {
                dst.insert(key.to_string(), v.clone());
                break;
            }
            src = v;
            let entry = dst
                .entry(key.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            match entry {
                Value::Object(m) => dst = m,
                _ => break,
            }
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> ListQuery {
        let params = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ListQuery::parse(&params).unwrap()
    }

    #[test]
    fn pages_filters_sorts_and_prunes() {
        let items: Vec<Value> = (0..7)
            .map(|i| json!({"name": format!("Q{i}"), "n": 7 - i, "s": {"a": i, "b": 0}}))
            .collect();
        let out = q(&[("page", "2"), ("page_size", "3")])
            .respond(items.clone(), &["name"])
            .unwrap();
        assert_eq!(out["page_count"], 3);
        assert_eq!(out["item_count"], 3);
        assert_eq!(out["items"][0]["name"], "Q3");
        let out = q(&[("name", "q1"), ("page", "1")])
            .respond(items.clone(), &["name"])
            .unwrap();
        assert_eq!(out["items"].as_array().unwrap().len(), 1);
        // RabbitMQ 3.10: no filter without paging.
        let out = q(&[("name", "q1")])
            .respond(items.clone(), &["name"])
            .unwrap();
        assert_eq!(out.as_array().unwrap().len(), 7);
        let out = q(&[("sort", "n"), ("columns", "name,s.a")])
            .respond(items.clone(), &["name"])
            .unwrap();
        assert_eq!(out[0], json!({"name": "Q6", "s": {"a": 6}}));
        let lazy = q(&[("sort", "n"), ("sort_reverse", "true"), ("page", "1")])
            .respond_lazy(
                (0..7).collect::<Vec<i64>>(),
                |i| format!("Q{i}"),
                |a, b| a.cmp(b),
                |i| items[*i as usize].clone(),
            )
            .unwrap();
        assert_eq!(lazy["items"][0]["name"], "Q0");
        assert!(q(&[("page", "9")]).respond(items, &["name"]).is_err());
        let bad: HashMap<String, String> = [
            ("page_size".to_string(), "501".to_string()),
            ("page".to_string(), "1".to_string()),
        ]
        .into();
        assert!(ListQuery::parse(&bad).is_err());
        let empty = q(&[("page", "1")]).respond(vec![], &["name"]).unwrap();
        assert_eq!(empty["page_count"], 0);
    }
}
