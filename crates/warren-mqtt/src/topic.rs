//! MQTT topic names and filters: validation, matching (with the rule that wildcards never
//! match a `$` topic), shared subscriptions (`$share/group/filter`), and the mapping onto
//! AMQP routing keys the RabbitMQ way: `/` and `.` swapped, `+` as `*`, `#` as `#`.

/// Why a topic or filter is refused.
#[derive(Debug, PartialEq, Eq)]
pub struct InvalidTopic(pub &'static str);

/// A topic a PUBLISH may name: not empty, no wildcard.
pub fn validate_name(topic: &str) -> Result<(), InvalidTopic> {
    if topic.is_empty() {
        return Err(InvalidTopic("empty topic name"));
    }
    if topic.contains(['+', '#']) {
        return Err(InvalidTopic("wildcard in a topic name"));
    }
    Ok(())
}

/// A filter SUBSCRIBE may name: `+` only as a whole level, `#` only as the whole last level.
pub fn validate_filter(filter: &str) -> Result<(), InvalidTopic> {
    if filter.is_empty() {
        return Err(InvalidTopic("empty topic filter"));
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
            return Err(InvalidTopic("'#' must be the whole last level"));
        }
        if level.contains('+') && *level != "+" {
            return Err(InvalidTopic("'+' must be a whole level"));
        }
    }
    Ok(())
}

/// A filter, split into its share group (if `$share/group/...`) and the filter proper.
pub fn parse_shared(filter: &str) -> Result<(Option<&str>, &str), InvalidTopic> {
    let Some(rest) = filter.strip_prefix("$share/") else {
        return Ok((None, filter));
    };
    let Some((group, inner)) = rest.split_once('/') else {
        return Err(InvalidTopic("shared subscription without a filter"));
    };
    if group.is_empty() || group.contains(['+', '#']) {
        return Err(InvalidTopic("invalid share name"));
    }
    validate_filter(inner)?;
    Ok((Some(group), inner))
}

/// Whether `filter` matches `topic` by MQTT's rules (section 4.7).
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

fn swap<S: FromIterator<char>>(s: &str) -> S {
    s.chars()
        .map(|c| match c {
            '/' => '.',
            '.' => '/',
            c => c,
        })
        .collect()
}

/// The AMQP routing key of an MQTT topic, as a `String` or straight into the inline string
/// a published message's routing key is (no allocation up to 24 bytes).
pub fn to_routing_key<S: FromIterator<char>>(topic: &str) -> S {
    swap(topic)
}

/// The MQTT topic of an AMQP routing key.
pub fn from_routing_key(key: &str) -> String {
    swap(key)
}

/// The topic exchange binding key of an MQTT filter.
pub fn filter_to_binding_key(filter: &str) -> String {
    filter
        .split('/')
        .map(|level| match level {
            "+" => "*".to_string(),
            l => l.replace('.', "/"),
        })
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_as_the_spec_says() {
        assert!(matches("sport/tennis/player1/#", "sport/tennis/player1"));
        assert!(matches(
            "sport/tennis/player1/#",
            "sport/tennis/player1/ranking"
        ));
        assert!(matches("sport/#", "sport"));
        assert!(matches("#", "a/b"));
        assert!(matches("sport/+", "sport/"));
        assert!(!matches("sport/+", "sport"));
        assert!(matches("+/+", "/finance"));
        assert!(matches("/+", "/finance"));
        assert!(!matches("+", "/finance"));
        assert!(!matches("#", "$SYS/x"));
        assert!(!matches("+/monitor", "$SYS/monitor"));
        assert!(matches("$SYS/#", "$SYS/monitor"));
    }

    #[test]
    fn filters_are_validated() {
        assert!(validate_filter("a/#").is_ok());
        assert!(validate_filter("+/a/+").is_ok());
        assert!(validate_filter("a/#/b").is_err());
        assert!(validate_filter("a#").is_err());
        assert!(validate_filter("a+/b").is_err());
        assert!(validate_filter("").is_err());
        assert!(validate_name("a/+").is_err());
        assert_eq!(parse_shared("$share/g/a/+").unwrap(), (Some("g"), "a/+"));
        assert!(parse_shared("$share/g").is_err());
        assert!(parse_shared("$share//a").is_err());
    }

    #[test]
    fn topics_map_to_routing_keys_the_rabbitmq_way() {
        assert_eq!(to_routing_key::<String>("a/b.c"), "a.b/c");
        assert_eq!(from_routing_key("a.b/c"), "a/b.c");
        assert_eq!(filter_to_binding_key("a/+/#"), "a.*.#");
        assert_eq!(filter_to_binding_key("v1.0/+"), "v1/0.*");
    }
}
