//! Backlog markup to plain lines: Jira wiki markup, GitLab/GitHub Markdown and the HTML that
//! exports leave behind, reduced to [`Block`]s a prompt can carry and the criteria finder can
//! read.
//!
//! | written | becomes |
//! |---|---|
//! | `h3. Title`, `## Title`, a line that is only bold (`*Title*`, `**Title**`), a short `Label:` line | [`Block::Heading`] |
//! | `* item`, `- item`, `+ item`, `# item` (Jira), `1. item`, `1) item`, `- [ ] item`, `- [x] item` | [`Block::Item`] |
//! | `‖h‖h‖`, `\|a\|b\|` table rows | cells joined with ` \| `; Markdown separator rows are dropped |
//! | `{code}`, `{noformat}`, ```` ``` ```` blocks | their lines, verbatim |
//! | `[text\|url]`, `[text](url)`, `[~user]` | `text`, `text`, `@user` |
//! | `!image.png!`, `![alt](url)`, `<img …>` | nothing |
//! | `*bold*`, `**bold**`, `_it_`, `` `code` ``, `{{code}}`, `~~x~~`, `{color:red}x{color}` | the text |
//! | `<br>`, other HTML tags, `&nbsp;` `&amp;` `&lt;` `&gt;` `&quot;` `&#39;` | a line break, the inner text, the character |
//! | `/label ~x` and other GitLab quick actions, `----` rules, `{quote}`/`{panel}` markers | nothing |
//!
//! A `#` at the start of a line is a Jira numbered item in a text that shows other Jira markup,
//! and a Markdown heading otherwise.

use std::sync::LazyLock;

use regex::Regex;

/// One line of a story, by what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Block {
    Heading(String),
    Item(String),
    Text(String),
    Blank,
}

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("valid regex")
}

static JIRA_SIGNS: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?m)^h[1-6]\.\s|\{(code|noformat|quote|panel|color)|^\|\||\[[^\]|]+\|[^\]]+\]|\[~[^\]]+\]|!\S+\.(png|jpe?g|gif|svg|webp)(\|[^!]*)?!",
    )
});
static HTML_BREAK: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)<br\s*/?>"));
static HTML_IMAGE: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)<img\b[^>]*>"));
static HTML_TAG: LazyLock<Regex> = LazyLock::new(|| re(r"</?[a-zA-Z][a-zA-Z0-9]*(\s[^<>]*)?/?>"));
static CODE_FENCE: LazyLock<Regex> =
    LazyLock::new(|| re(r"^\s*(```|~~~)|^\s*\{(code|noformat)(:[^}]*)?\}\s*$"));
static JIRA_CODE_INLINE: LazyLock<Regex> =
    LazyLock::new(|| re(r"\{(code|noformat)(:[^}]*)?\}(.*?)\{(code|noformat)\}"));
static JIRA_HEADING: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*h[1-6]\.\s+(.*)$"));
static MD_HEADING: LazyLock<Regex> = LazyLock::new(|| re(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$"));
static BOLD_LINE: LazyLock<Regex> =
    LazyLock::new(|| re(r"^\s*(\*\*|__|\*)([^*_][^*]{0,78})(\*\*|__|\*)\s*:?\s*$"));
static LABEL_LINE: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*([A-Z][A-Za-z'/&() -]{1,40}):\s*$"));
static CHECKBOX: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*(?:[-*+]\s+)?\[[ xX]\]\s+(.*)$"));
static BULLET: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*[-*+•]\s+(.*)$"));
static JIRA_BULLET: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*[*#-]+\s+(.*)$"));
static NUMBERED: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*\d{1,3}[.)]\s+(.*)$"));
static TABLE_SEPARATOR: LazyLock<Regex> =
    LazyLock::new(|| re(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$"));
static RULE: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*(-{3,}|\*{3,}|_{3,})\s*$"));
static QUICK_ACTION: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^/(label|unlabel|relabel|assign|unassign|milestone|estimate|spend|weight|epic|iteration|due|relate|cc|board_move|copy_metadata|parent|health_status|confidential|close|reopen|title|shrug|tableflip)\b",
    )
});
static PANEL_MARKER: LazyLock<Regex> = LazyLock::new(|| re(r"\{(quote|panel|color)(:[^}]*)?\}"));
static QUOTE_PREFIX: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*(>\s?|bq\.\s+)"));
static MD_IMAGE: LazyLock<Regex> = LazyLock::new(|| re(r"!\[[^\]]*\]\([^)]*\)"));
static JIRA_IMAGE: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)!([^!\s|]+\.(png|jpe?g|gif|svg|webp|bmp))(\|[^!]*)?!"));
static MD_LINK: LazyLock<Regex> = LazyLock::new(|| re(r"\[([^\]]+)\]\(([^)\s]+)(\s[^)]*)?\)"));
static JIRA_MENTION: LazyLock<Regex> = LazyLock::new(|| re(r"\[~([^\]]+)\]"));
static JIRA_LINK: LazyLock<Regex> = LazyLock::new(|| re(r"\[([^\]|]+)\|([^\]]+)\]"));
static BARE_LINK: LazyLock<Regex> = LazyLock::new(|| re(r"\[((?:https?|mailto):[^\]\s]+)\]"));
static DOUBLE_EMPHASIS: LazyLock<Regex> =
    LazyLock::new(|| re(r"(\*\*|__|~~)(\S(?:.*?\S)?)(\*\*|__|~~)"));
static SINGLE_EMPHASIS: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(^|[\s(\[/])([*_+])([^*_\s](?:[^*_]*[^*_\s])?)([*_+])($|[\s.,;:!?)\]/])")
});
static INLINE_CODE: LazyLock<Regex> = LazyLock::new(|| re(r"`([^`]+)`|\{\{(.+?)\}\}"));
static SPACES: LazyLock<Regex> = LazyLock::new(|| re(r"[ \t\u{a0}]+"));

/// The story's lines, by kind, with markup removed.
pub(super) fn blocks(text: &str) -> Vec<Block> {
    let jira = JIRA_SIGNS.is_match(text);
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let text = HTML_BREAK.replace_all(&text, "\n");
    let text = HTML_IMAGE.replace_all(&text, "");
    let text = HTML_TAG.replace_all(&text, "");
    let text = JIRA_CODE_INLINE.replace_all(&text, "$3");
    let text = decode_entities(&text);

    let mut blocks = Vec::new();
    let mut in_code = false;
    for line in text.lines() {
        if CODE_FENCE.is_match(line) {
            in_code = !in_code;
            continue;
        }
        if in_code {
            let line = line.trim_end();
            blocks.push(if line.trim().is_empty() {
                Block::Blank
            } else {
                Block::Text(line.to_owned())
            });
            continue;
        }
        blocks.extend(block(line, jira));
    }
    blocks
}

/// The line's block; `None` for lines that are only layout (table separators, quick actions).
fn block(line: &str, jira: bool) -> Option<Block> {
    let line = PANEL_MARKER.replace_all(line, "");
    let line = QUOTE_PREFIX.replace(&line, "");
    let line = line.trim_end();
    if (line.contains('|') && TABLE_SEPARATOR.is_match(line))
        || QUICK_ACTION.is_match(line.trim_start())
    {
        return None;
    }
    if line.trim().is_empty() || RULE.is_match(line) {
        return Some(Block::Blank);
    }
    Some(kind_of(line, jira))
}

fn kind_of(line: &str, jira: bool) -> Block {
    if let Some(heading) = JIRA_HEADING
        .captures(line)
        .or_else(|| (!jira).then(|| MD_HEADING.captures(line)).flatten())
    {
        return non_empty(inline(&heading[1]), Block::Heading);
    }
    if let Some(bold) = BOLD_LINE.captures(line)
        && bold[1] == bold[3]
    {
        return non_empty(inline(&bold[2]), Block::Heading);
    }
    if line.trim_start().starts_with('|') {
        let cells: Vec<String> = line
            .split('|')
            .map(|cell| inline(cell.trim()))
            .filter(|cell| !cell.is_empty())
            .collect();
        return non_empty(cells.join(" | "), Block::Text);
    }
    let item = CHECKBOX
        .captures(line)
        .or_else(|| BULLET.captures(line))
        .or_else(|| jira.then(|| JIRA_BULLET.captures(line)).flatten())
        .or_else(|| NUMBERED.captures(line));
    if let Some(item) = item {
        return non_empty(inline(&item[1]), Block::Item);
    }
    let text = inline(line);
    if LABEL_LINE.is_match(&text) && text.split_whitespace().count() <= 5 {
        return Block::Heading(text.trim_end_matches(':').trim().to_owned());
    }
    non_empty(text, Block::Text)
}

fn non_empty(text: String, kind: fn(String) -> Block) -> Block {
    if text.trim().is_empty() {
        Block::Blank
    } else {
        kind(text)
    }
}

/// One line's inline markup removed: images, links, emphasis, code spans.
fn inline(text: &str) -> String {
    let text = MD_IMAGE.replace_all(text, "");
    let text = JIRA_IMAGE.replace_all(&text, "");
    let text = MD_LINK.replace_all(&text, "$1");
    let text = JIRA_MENTION.replace_all(&text, "@$1");
    let text = JIRA_LINK.replace_all(&text, "$1");
    let text = BARE_LINK.replace_all(&text, "$1");
    let text = INLINE_CODE.replace_all(&text, "$1$2");
    let mut text = DOUBLE_EMPHASIS.replace_all(&text, "$2").into_owned();
    // Twice: neighbouring spans share the space between them.
    for _ in 0..2 {
        text = SINGLE_EMPHASIS.replace_all(&text, "$1$3$5").into_owned();
    }
    SPACES.replace_all(text.trim(), " ").into_owned()
}

fn decode_entities(text: &str) -> String {
    text.replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The blocks as the prompt shows them: headings and paragraphs as lines, items as `- ` lines,
/// at most one blank line in a row.
pub(super) fn render(blocks: &[Block]) -> String {
    let mut out = String::new();
    let mut blank = true;
    for block in blocks {
        let line = match block {
            Block::Blank => {
                if !blank {
                    out.push('\n');
                }
                blank = true;
                continue;
            }
            Block::Heading(text) | Block::Text(text) => text.clone(),
            Block::Item(text) => format!("- {text}"),
        };
        out.push_str(&line);
        out.push('\n');
        blank = false;
    }
    out.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(text: &str) -> String {
        render(&blocks(text))
    }

    #[test]
    fn jira_markup_becomes_plain_text() {
        let text = "h3. Background\nSee [the mockup|https://figma.com/x] by [~jdoe], {color:red}*urgent*{color}.\n!screen.png|thumbnail!\n||Field||Rule||\n|name|_required_|\n# first\n# second\n{code:json}\n{\"a\": 1}\n{code}\n----\nbq. quoted";
        assert_eq!(
            plain(text),
            "Background\nSee the mockup by @jdoe, urgent.\n\nField | Rule\nname | required\n- first\n- second\n{\"a\": 1}\n\nquoted"
        );
    }

    #[test]
    fn markdown_and_html_become_plain_text() {
        let text = "## Context\r\nUse **bold** and `code`, see [docs](https://x.y/z) &amp; ![shot](/uploads/a.png)<br>next line&nbsp;here\r\n<img src=\"a.png\" width=\"480\">\r\n| a | b |\r\n|---|---|\r\n| 1 | 2 |\r\n- [ ] open item\r\n- [x] done item\r\n/label ~backend\r\n```\r\nraw *text*\r\n```";
        assert_eq!(
            plain(text),
            "Context\nUse bold and code, see docs &\nnext line here\n\na | b\n1 | 2\n- open item\n- done item\nraw *text*"
        );
    }

    #[test]
    fn kinds_are_recognised() {
        let found = blocks("*Acceptance Criteria*\n1. one\nNotes:\nplain words");
        assert_eq!(
            found,
            vec![
                Block::Heading("Acceptance Criteria".into()),
                Block::Item("one".into()),
                Block::Heading("Notes".into()),
                Block::Text("plain words".into()),
            ]
        );
    }

    #[test]
    fn a_hash_is_a_heading_in_markdown_and_an_item_in_jira() {
        assert_eq!(blocks("# Title")[0], Block::Heading("Title".into()));
        assert_eq!(blocks("h3. Steps\n# Title")[1], Block::Item("Title".into()));
    }
}
