//! The flat XML WeChat uses for pushes and passive replies: `<xml><Name>value</Name>...</xml>`.

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::Event;
use quick_xml::Reader;

/// The root's child elements as `(name, text)` in document order.
///
/// A child's text is its character data, CDATA sections and entity references joined; when a
/// child holds CDATA, white space around the sections (pretty-printing) is dropped. Elements
/// nested inside a child (other push types have some) are skipped. A DOCTYPE is refused.
pub(crate) fn read_flat(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut reader = Reader::from_str(text);
    reader.config_mut().trim_text(false);
    let mut depth = 0usize;
    let mut roots = 0usize;
    let mut fields = Vec::new();
    // The open child: its name and its pieces (is_cdata, text).
    let mut child: Option<(String, Vec<(bool, String)>)> = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("XML error at byte {}: {e}", reader.error_position()))?;
        match event {
            Event::Start(e) => {
                depth += 1;
                if depth == 1 {
                    roots += 1;
                    if roots > 1 {
                        return Err("XML has more than one root element".into());
                    }
                } else if depth == 2 {
                    let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                    child = Some((name, Vec::new()));
                }
            }
            Event::Empty(e) => {
                if depth == 0 {
                    roots += 1;
                    if roots > 1 {
                        return Err("XML has more than one root element".into());
                    }
                } else if depth == 1 {
                    let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                    fields.push((name, String::new()));
                }
            }
            Event::End(_) => {
                if depth == 2 {
                    if let Some((name, pieces)) = child.take() {
                        fields.push((name, join(pieces)));
                    }
                }
                depth = depth.saturating_sub(1);
            }
            Event::Text(t) => {
                let s = t.xml10_content().map_err(|e| format!("XML text: {e}"))?;
                if depth == 2 {
                    if let Some((_, pieces)) = child.as_mut() {
                        pieces.push((false, s.into_owned()));
                    }
                } else if depth == 0 && !s.trim().is_empty() {
                    return Err("XML has text outside the root element".into());
                }
            }
            Event::CData(c) => {
                if depth == 2 {
                    let s = c.decode().map_err(|e| format!("XML CDATA: {e}"))?;
                    if let Some((_, pieces)) = child.as_mut() {
                        pieces.push((true, s.into_owned()));
                    }
                }
            }
            Event::GeneralRef(r) => {
                let resolved = match r
                    .resolve_char_ref()
                    .map_err(|e| format!("XML reference: {e}"))?
                {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r.decode().map_err(|e| format!("XML reference: {e}"))?;
                        resolve_predefined_entity(&name)
                            .ok_or_else(|| format!("unknown XML entity &{name};"))?
                            .to_string()
                    }
                };
                if depth == 2 {
                    if let Some((_, pieces)) = child.as_mut() {
                        pieces.push((false, resolved));
                    }
                }
            }
            Event::DocType(_) => return Err("XML with a DOCTYPE is not accepted".into()),
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
    }
    if depth != 0 {
        return Err("XML ends inside an element".into());
    }
    if roots == 0 {
        return Err("no XML element".into());
    }
    Ok(fields)
}

fn join(pieces: Vec<(bool, String)>) -> String {
    let has_cdata = pieces.iter().any(|(c, _)| *c);
    pieces
        .into_iter()
        .filter(|(cdata, s)| !has_cdata || *cdata || !s.trim().is_empty())
        .map(|(_, s)| s)
        .collect()
}

/// A CDATA section holding `value` (a `]]>` inside is split across two sections).
pub(crate) fn cdata(value: &str) -> String {
    format!("<![CDATA[{}]]>", value.replace("]]>", "]]]]><![CDATA[>"))
}

/// Refuses characters XML 1.0 cannot carry, even in CDATA.
pub(crate) fn check_chars(field: &str, value: &str) -> Result<(), String> {
    match value.chars().find(|&c| {
        !(matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{fffe}' && c != '\u{ffff}'))
    }) {
        Some(c) => Err(format!(
            "{field} holds the character U+{:04X}, which XML cannot carry",
            c as u32
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_children() {
        let f = read_flat(
            "<?xml version=\"1.0\"?>\n<xml>\n  <A><![CDATA[x ]]]]><![CDATA[> y]]></A>\n  <B> 1 </B><C/><D>a&amp;b&#x4e2d;</D>\n  <E><F>nested</F>t</E>\n</xml>",
        )
        .unwrap();
        assert_eq!(
            f,
            vec![
                ("A".to_string(), "x ]]> y".to_string()),
                ("B".into(), " 1 ".into()),
                ("C".into(), "".into()),
                ("D".into(), "a&b中".into()),
                ("E".into(), "t".into()),
            ]
        );
        assert_eq!(cdata("a]]>b"), "<![CDATA[a]]]]><![CDATA[>b]]>");
    }

    #[test]
    fn refusals() {
        assert!(read_flat("<xml><A>1</B></xml>").is_err());
        assert!(read_flat("<xml><A>1</A>").is_err());
        assert!(read_flat("<xml/><xml/>").is_err());
        assert!(read_flat("").is_err());
        assert!(read_flat("<!DOCTYPE x [<!ENTITY e \"v\">]><xml><A>&e;</A></xml>").is_err());
        assert!(read_flat("<xml><A>&e;</A></xml>").is_err());
        assert!(check_chars("f", "ok\n").is_ok());
        assert!(check_chars("f", "bad\u{1}").is_err());
    }
}
