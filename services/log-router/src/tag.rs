//! Docker's `tag` log option: a Go-template subset naming the container in remote logs.
use crate::{
    error::{Error, Result},
    logger::LogConfig,
};

/// The markers Docker documents for `tag`.
const FIELDS: &[&str] = &["ID", "FullID", "Name", "ImageName", "ImageID", "DaemonName"];

/// Expands `tag` (or `default` when the option is absent or empty) for the container `id`.
/// Unknown `{{...}}` markers are refused, as Docker's template parser does at create time.
pub fn expand(config: &LogConfig, id: &str, default: &str) -> Result<String> {
    let template = match config.options.get("tag") {
        Some(t) if !t.is_empty() => t.as_str(),
        _ => default,
    };
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| Error::InvalidArgument(format!("invalid tag template: {template:?}")))?;
        let field = after[..end].trim();
        let value = match field.strip_prefix('.') {
            Some("ID") => short(id),
            Some("FullID") => id,
            // Docker's names carry a leading '/'; the tag shows them without it.
            Some("Name") => config.name.trim_start_matches('/'),
            Some("ImageName") => config.image.as_str(),
            Some("ImageID") => short(config.image_id.trim_start_matches("sha256:")),
            Some("DaemonName") => "berth",
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "invalid tag template {template:?}: unknown field {field:?} (known: .{})",
                    FIELDS.join(", .")
                )))
            }
        };
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(tag: Option<&str>) -> LogConfig {
        let mut c = LogConfig {
            driver: "syslog".into(),
            name: "/web".into(),
            image: "busybox:latest".into(),
            image_id: "sha256:0123456789abcdef0123".into(),
            ..Default::default()
        };
        if let Some(t) = tag {
            c.options.insert("tag".into(), t.into());
        }
        c
    }

    const ID: &str = "aabbccddeeff00112233";

    #[test]
    fn expands_every_documented_field() {
        let c = config(Some(
            "{{.ID}} {{.FullID}} {{.Name}} {{.ImageName}} {{.ImageID}} {{.DaemonName}}",
        ));
        assert_eq!(
            expand(&c, ID, "{{.ID}}").unwrap(),
            "aabbccddeeff aabbccddeeff00112233 web busybox:latest 0123456789ab berth"
        );
    }

    #[test]
    fn absent_or_empty_tag_takes_the_driver_default() {
        assert_eq!(
            expand(&config(None), ID, "{{.ID}}").unwrap(),
            "aabbccddeeff"
        );
        assert_eq!(
            expand(&config(Some("")), ID, "{{.ID}}").unwrap(),
            "aabbccddeeff"
        );
        assert_eq!(
            expand(&config(Some("app.{{ .Name }}/x")), ID, "").unwrap(),
            "app.web/x"
        );
    }

    #[test]
    fn unknown_or_unclosed_markers_are_refused() {
        let e = expand(&config(Some("{{.Nope}}")), ID, "").unwrap_err();
        assert!(e.to_string().contains(".Nope"), "{e}");
        assert!(expand(&config(Some("{{.ID")), ID, "").is_err());
    }
}
