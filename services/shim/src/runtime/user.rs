//! Resolves `user[:group]` against the container's /etc/passwd and /etc/group, the way
//! runc does for Docker's `--user`.
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (may repeat the primary gid).
    pub groups: Vec<u32>,
    pub home: String,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?,
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: f.get(5).copied().unwrap_or(""),
            })
        })
}

fn group_entries(text: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let members = f
                .get(3)
                .map(|m| {
                    m.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            Some(GroupEntry {
                name: f.first()?,
                gid: f.get(2)?.parse().ok()?,
                members,
            })
        })
}

/// `spec` is the user as given (`""`, `nobody`, `1000`, `app:staff`, `1000:50`); the
/// files' contents are empty when they do not exist in the image.
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<ExecUser> {
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = if user.is_empty() { "0" } else { user };
    let numeric = user.parse::<u32>().ok();
    let entry = passwd_entries(passwd).find(|e| match numeric {
        Some(n) => e.uid == n,
        None => e.name == user,
    });
    let (uid, mut gid, home, name) = match (&entry, numeric) {
        (Some(e), _) => (e.uid, e.gid, e.home.to_string(), Some(e.name)),
        (None, Some(n)) => (n, 0, "/".to_string(), None),
        (None, None) => {
            return Err(Error::User(format!(
                "unable to find user {user}: no matching entries in passwd file"
            )))
        }
    };
    let mut groups = Vec::new();
    match grp.filter(|g| !g.is_empty()) {
        Some(g) => {
            gid = match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => group_entries(group)
                    .find(|e| e.name == g)
                    .map(|e| e.gid)
                    .ok_or_else(|| {
                        Error::User(format!(
                            "unable to find group {g}: no matching entries in group file"
                        ))
                    })?,
            };
        }
        None => {
            if let Some(name) = name {
                groups = group_entries(group)
                    .filter(|e| e.members.contains(&name))
                    .map(|e| e.gid)
                    .collect();
            }
        }
    }
    let home = if home.is_empty() {
        "/".to_string()
    } else {
        home
    };
    Ok(ExecUser {
        uid,
        gid,
        groups,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n# comment\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:root,app\nstaff:x:50:app\nnogroup:x:65534:\n";

    #[test]
    fn names_numbers_and_groups() {
        let root = resolve("", PASSWD, GROUP).unwrap();
        assert_eq!((root.uid, root.gid, root.home.as_str()), (0, 0, "/root"));
        assert_eq!(root.groups, vec![10]);
        let nobody = resolve("nobody", PASSWD, GROUP).unwrap();
        assert_eq!((nobody.uid, nobody.gid), (65534, 65534));
        let app = resolve("app", PASSWD, GROUP).unwrap();
        assert_eq!(app.groups, vec![10, 50]);
        let explicit = resolve("app:staff", PASSWD, GROUP).unwrap();
        assert_eq!(
            (explicit.uid, explicit.gid, explicit.groups.len()),
            (1000, 50, 0)
        );
        let numeric = resolve("4242:77", PASSWD, GROUP).unwrap();
        assert_eq!(
            (numeric.uid, numeric.gid, numeric.home.as_str()),
            (4242, 77, "/")
        );
        assert_eq!(resolve("1000", PASSWD, GROUP).unwrap().home, "/home/app");
        assert_eq!(resolve("0", "", "").unwrap().uid, 0);
    }

    #[test]
    fn unknown_names_are_errors() {
        let e = resolve("nosuch", PASSWD, GROUP).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unable to find user nosuch: no matching entries in passwd file"
        );
        assert_eq!(e.exit_code(), 126);
        let e = resolve("app:nogrp", PASSWD, GROUP).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unable to find group nogrp: no matching entries in group file"
        );
    }
}
