//! The template model and the library file format (`{"quiver": 1, "templates": [...]}`).

use serde::{Deserialize, Serialize};

/// The library file format version this build reads and writes.
pub const LIBRARY_FORMAT: u32 = 1;

/// A library file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Library {
    pub quiver: u32,
    pub templates: Vec<Template>,
}

/// A template: an ordered list of parts sent one after another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub folder: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shortcut: Option<String>,
    /// Set by the store; a library file may leave it out.
    #[serde(default = "first_revision")]
    pub revision: u32,
    pub parts: Vec<Part>,
}

fn first_revision() -> u32 {
    1
}

/// One part of a template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Part {
    /// Plain text.
    Text { text: String },
}

impl Part {
    /// The part's type name as written in library files.
    pub fn kind(&self) -> &'static str {
        match self {
            Part::Text { .. } => "text",
        }
    }
}

impl Library {
    /// Parses and checks a library file.
    pub fn from_json(text: &str) -> Result<Library, String> {
        let lib: Library = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if lib.quiver != LIBRARY_FORMAT {
            return Err(format!(
                "library format {} is not supported (this build reads {})",
                lib.quiver, LIBRARY_FORMAT
            ));
        }
        for t in &lib.templates {
            t.check()?;
        }
        Ok(lib)
    }
}

impl Template {
    /// Structural checks that serde cannot express.
    pub fn check(&self) -> Result<(), String> {
        if self.id.trim().is_empty() {
            return Err("template id is empty".into());
        }
        if self.parts.is_empty() {
            return Err(format!("template {:?} has no parts", self.id));
        }
        Ok(())
    }
}
