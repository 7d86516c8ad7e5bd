//! Where in a Sigma rule file a problem is, for error messages: the Sigma
//! parser reports YAML syntax errors with a line, but a rule it refuses
//! (an unknown modifier, a condition naming a missing selection) or that
//! rootwatch refuses (another log source, no id) only by its words. The
//! line is found again in the file's text: the rule's YAML document (by
//! its id or title), then the line in it holding the key the problem is
//! about or a word the message quotes.

/// The lines (1-based, inclusive) of each YAML document of `text`.
fn documents(text: &str) -> Vec<(usize, usize)> {
    let mut docs = Vec::new();
    let mut start = 1;
    let mut last = 0;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        last = n;
        if line.trim_end() == "---" {
            if n > start {
                docs.push((start, n - 1));
            }
            start = n + 1;
        }
    }
    if last >= start {
        docs.push((start, last));
    }
    docs
}

/// A top-level `key: value` line's value, without quotes.
fn top_value<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(key)?.strip_prefix(':')?;
    Some(rest.trim().trim_matches(['"', '\'']))
}

/// The first line within `lines` whose text satisfies `pred`.
fn find_line(
    text: &str,
    (first, last): (usize, usize),
    pred: impl Fn(&str) -> bool,
) -> Option<usize> {
    text.lines()
        .enumerate()
        .skip(first - 1)
        .take(last + 1 - first)
        .find(|(_, l)| pred(l))
        .map(|(i, _)| i + 1)
}

/// The document of the rule with this id, or else this title.
fn rule_document(text: &str, id: Option<&str>, title: &str) -> Option<(usize, usize)> {
    let docs = documents(text);
    let has = |doc: (usize, usize), key: &str, want: &str| {
        find_line(text, doc, |l| top_value(l, key) == Some(want)).is_some()
    };
    id.and_then(|id| docs.iter().copied().find(|d| has(*d, "id", id)))
        .or_else(|| docs.iter().copied().find(|d| has(*d, "title", title)))
}

/// Words a message quotes or ends with, most telling first: `x`, 'x',
/// "x", the text after its last `: `, and each line of a several-line
/// message (a regular expression's error shows the expression).
fn quoted_words(message: &str) -> Vec<&str> {
    let mut words = Vec::new();
    for q in ['`', '\'', '"'] {
        let parts: Vec<&str> = message.split(q).collect();
        words.extend(parts.iter().skip(1).step_by(2).copied());
    }
    if let Some((_, tail)) = message.rsplit_once(": ") {
        words.push(tail.lines().next().unwrap_or(tail));
    }
    words.extend(message.lines().skip(1).map(str::trim));
    words.retain(|w| w.len() >= 2 && !w.contains('\n'));
    words
}

/// The line of a problem with a rule: the document's `key:` line when the
/// problem is about a key, else the first line of the document holding a
/// word the message quotes, else the document's first line. `None` when no
/// document holds that rule.
pub fn rule_line(
    text: &str,
    id: Option<&str>,
    title: &str,
    key: Option<&str>,
    message: &str,
) -> Option<usize> {
    let doc = rule_document(text, id, title)?;
    if let Some(key) = key
        && let Some(n) = find_line(text, doc, |l| top_value(l, key).is_some())
    {
        return Some(n);
    }
    // The rule's own title, quoted in many messages, tells nothing.
    let line = quoted_words(message)
        .into_iter()
        .filter(|w| *w != title)
        .find_map(|w| find_line(text, doc, |l| l.contains(w)));
    Some(line.unwrap_or(doc.0))
}

/// The line of a problem the parser names only in words: the line it
/// gives, or the first line of the file holding a word the message quotes,
/// or the first line of the file's only document (a field it misses).
pub fn message_line(text: &str, message: &str) -> Option<usize> {
    let whole = (1, text.lines().count().max(1));
    if let Some(n) = yaml_line(message) {
        return Some(n);
    }
    word_line(text, whole, message).or_else(|| match documents(text).as_slice() {
        [(first, _)] => Some(*first),
        _ => None,
    })
}

fn word_line(text: &str, doc: (usize, usize), message: &str) -> Option<usize> {
    quoted_words(message)
        .into_iter()
        .find_map(|w| find_line(text, doc, |l| l.contains(w)))
}

/// `... at line 5 column 11`, as YAML errors say it.
fn yaml_line(message: &str) -> Option<usize> {
    let (_, rest) = message.rsplit_once("at line ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "title: First\nid: 11111111-1111-4111-8111-111111111111\nlogsource:\n  product: aws\n  service: cloudtrail\ndetection:\n  sel:\n    eventName: StopLogging\n  condition: sel\n---\ntitle: 'Second'\nlogsource:\n  product: windows\ndetection:\n  sel:\n    eventName|bogus: x\n  condition: sel and missing\n";

    #[test]
    fn documents_are_split_at_their_markers() {
        assert_eq!(documents(FILE), vec![(1, 9), (11, 17)]);
        assert_eq!(documents("---\na: 1\n---\n"), vec![(2, 2)]);
    }

    #[test]
    fn a_rule_problem_points_at_its_key_or_the_word_it_quotes() {
        let second = |key, message| rule_line(FILE, None, "Second", key, message);
        assert_eq!(second(Some("logsource"), "another log source"), Some(12));
        assert_eq!(
            second(None, "unknown detection identifier: missing"),
            Some(17)
        );
        assert_eq!(second(None, "Unknown modifier 'bogus'"), Some(16));
        assert_eq!(second(None, "something else"), Some(11));
        assert_eq!(second(None, "rule `Second` counts `missing`"), Some(17));
        let first = rule_line(
            FILE,
            Some("11111111-1111-4111-8111-111111111111"),
            "First",
            Some("id"),
            "",
        );
        assert_eq!(first, Some(2));
        assert_eq!(rule_line(FILE, None, "Third", None, ""), None);
    }

    #[test]
    fn a_parser_message_is_placed_by_its_line_or_words() {
        assert_eq!(
            message_line(FILE, "mapping values are not allowed at line 5 column 11"),
            Some(5)
        );
        assert_eq!(message_line(FILE, "Unknown modifier 'bogus'"), Some(16));
        assert_eq!(message_line(FILE, "nothing quoted"), None);
        assert_eq!(
            message_line("title: x\nid: y\n", "Missing required field 'detection'"),
            Some(1)
        );
    }
}
