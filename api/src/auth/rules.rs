//! Who may do what where (`auth.access` and `auth.admins`).
//!
//! For a repository, the rule whose matching pattern is the most specific
//! decides alone: the pattern with the most characters that are not
//! wildcards, the first listed on a tie. Within it, a listed user gets
//! `actions`, any logged-in user `authenticated`, everyone `anonymous`
//! (each includes the ones after it). Admins may do everything everywhere.
//! Without any rule, every logged-in user may do everything (distribution's
//! htpasswd behaviour) and anonymous callers nothing.

use crate::route::Access;
use std::collections::HashSet;

/// Who is asking: a user who logged in, or nobody.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Anonymous,
    User(String),
}

impl Identity {
    pub fn name(&self) -> &str {
        match self {
            Identity::Anonymous => "",
            Identity::User(name) => name,
        }
    }
}

/// A set of [`Access`]es.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Actions(u8);

impl Actions {
    pub const ALL: Actions = Actions(0b111);
    pub const NONE: Actions = Actions(0);

    fn bit(access: Access) -> u8 {
        match access {
            Access::Pull => 1,
            Access::Push => 2,
            Access::Delete => 4,
        }
    }

    pub fn allows(self, access: Access) -> bool {
        self.0 & Self::bit(access) != 0
    }

    fn union(self, other: Actions) -> Actions {
        Actions(self.0 | other.0)
    }

    /// `pull`, `push`, `delete`, or `*` for all three.
    pub fn parse(names: &[String]) -> Result<Actions, String> {
        names.iter().try_fold(Actions::NONE, |set, name| {
            let access = match name.as_str() {
                "pull" => Access::Pull,
                "push" => Access::Push,
                "delete" => Access::Delete,
                "*" => return Ok(Actions::ALL),
                other => return Err(format!("{other:?} is not one of pull, push, delete, *")),
            };
            Ok(Actions(set.0 | Self::bit(access)))
        })
    }
}

/// One `auth.access` entry as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRule {
    pub repositories: Vec<String>,
    pub users: Vec<String>,
    pub actions: Actions,
    pub authenticated: Actions,
    pub anonymous: Actions,
}

#[derive(Debug)]
struct Compiled {
    patterns: Vec<(globset::GlobMatcher, usize)>,
    users: HashSet<String>,
    actions: Actions,
    authenticated: Actions,
    anonymous: Actions,
}

#[derive(Debug)]
pub struct AccessRules {
    rules: Vec<Compiled>,
    admins: HashSet<String>,
}

impl AccessRules {
    pub fn new(rules: &[AccessRule], admins: &[String]) -> Result<Self, String> {
        let rules = rules
            .iter()
            .enumerate()
            .map(|(i, rule)| {
                if rule.repositories.is_empty() {
                    return Err(format!(
                        "auth.access[{i}].repositories: name at least one pattern"
                    ));
                }
                let patterns = rule
                    .repositories
                    .iter()
                    .map(|pattern| {
                        let glob = raft::gc::repository_glob(pattern)
                            .map_err(|e| format!("auth.access[{i}].repositories: {e}"))?;
                        Ok((glob.compile_matcher(), specificity(pattern)))
                    })
                    .collect::<Result<_, String>>()?;
                Ok(Compiled {
                    patterns,
                    users: rule.users.iter().cloned().collect(),
                    actions: rule.actions,
                    authenticated: rule.authenticated,
                    anonymous: rule.anonymous,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(AccessRules {
            rules,
            admins: admins.iter().cloned().collect(),
        })
    }

    /// What `who` may do in `repository`.
    pub fn allowed(&self, who: &Identity, repository: &str) -> Actions {
        if let Identity::User(name) = who {
            if self.admins.contains(name) || self.rules.is_empty() {
                return Actions::ALL;
            }
        }
        let Some(rule) = self.deciding_rule(repository) else {
            return Actions::NONE;
        };
        match who {
            Identity::Anonymous => rule.anonymous,
            Identity::User(name) => {
                let everyone = rule.authenticated.union(rule.anonymous);
                if rule.users.contains(name) {
                    rule.actions.union(everyone)
                } else {
                    everyone
                }
            }
        }
    }

    /// Whether anonymous callers may do anything anywhere (then a request
    /// without credentials is not challenged before its rights are known).
    pub fn anonymous_anywhere(&self) -> bool {
        self.rules
            .iter()
            .any(|rule| rule.anonymous != Actions::NONE)
    }

    fn deciding_rule(&self, repository: &str) -> Option<&Compiled> {
        let mut best: Option<(usize, &Compiled)> = None;
        for rule in &self.rules {
            for (matcher, specificity) in &rule.patterns {
                if matcher.is_match(repository) && best.is_none_or(|(s, _)| *specificity > s) {
                    best = Some((*specificity, rule));
                }
            }
        }
        best.map(|(_, rule)| rule)
    }
}

/// Characters of `pattern` that are not glob syntax.
fn specificity(pattern: &str) -> usize {
    pattern
        .chars()
        .filter(|c| !matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | ',' | '!'))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actions(names: &[&str]) -> Actions {
        Actions::parse(&names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn rule(patterns: &[&str], users: &[&str], granted: &[&str], anonymous: &[&str]) -> AccessRule {
        AccessRule {
            repositories: patterns.iter().map(|p| p.to_string()).collect(),
            users: users.iter().map(|u| u.to_string()).collect(),
            actions: actions(granted),
            authenticated: Actions::NONE,
            anonymous: actions(anonymous),
        }
    }

    fn user(name: &str) -> Identity {
        Identity::User(name.to_owned())
    }

    #[test]
    fn the_most_specific_pattern_decides_alone() {
        let rules = AccessRules::new(
            &[
                rule(&["team-a/**"], &["alice", "ci-a"], &["pull", "push"], &[]),
                rule(&["**"], &[], &[], &["pull"]),
                rule(&["team-a/public/*"], &["alice"], &["pull"], &["pull"]),
            ],
            &["ops".to_owned()],
        )
        .unwrap();
        let pull_push = actions(&["pull", "push"]);
        assert_eq!(rules.allowed(&user("alice"), "team-a/app"), pull_push);
        assert_eq!(rules.allowed(&user("ci-a"), "team-a/deep/app"), pull_push);
        assert_eq!(
            rules.allowed(&user("bob"), "team-a/app"),
            Actions::NONE,
            "team-a/** decides, bob is not in it"
        );
        assert_eq!(
            rules.allowed(&Identity::Anonymous, "team-a/app"),
            Actions::NONE
        );
        assert_eq!(
            rules.allowed(&Identity::Anonymous, "library/alpine"),
            actions(&["pull"])
        );
        assert_eq!(
            rules.allowed(&user("alice"), "team-a/public/web"),
            actions(&["pull"])
        );
        assert_eq!(
            rules.allowed(&Identity::Anonymous, "team-a/public/web"),
            actions(&["pull"])
        );
        assert_eq!(rules.allowed(&user("ops"), "team-a/app"), Actions::ALL);
        assert!(rules.anonymous_anywhere());
    }

    #[test]
    fn without_rules_every_login_may_do_everything_and_anonymous_nothing() {
        let rules = AccessRules::new(&[], &[]).unwrap();
        assert_eq!(rules.allowed(&user("anyone"), "x/y"), Actions::ALL);
        assert_eq!(rules.allowed(&Identity::Anonymous, "x/y"), Actions::NONE);
        assert!(!rules.anonymous_anywhere());
    }

    #[test]
    fn a_star_stays_within_one_segment() {
        let rules = AccessRules::new(&[rule(&["ci/*"], &["ci"], &["*"], &[])], &[]).unwrap();
        assert_eq!(rules.allowed(&user("ci"), "ci/app"), Actions::ALL);
        assert_eq!(rules.allowed(&user("ci"), "ci/app/nested"), Actions::NONE);
    }

    #[test]
    fn bad_rules_name_the_entry() {
        assert!(Actions::parse(&["pul".to_owned()])
            .unwrap_err()
            .contains("pul"));
        let err = AccessRules::new(&[rule(&["a/[b"], &[], &[], &[])], &[]).unwrap_err();
        assert!(err.contains("auth.access[0].repositories"), "{err}");
        let err = AccessRules::new(&[rule(&[], &[], &[], &[])], &[]).unwrap_err();
        assert!(err.contains("at least one pattern"), "{err}");
    }
}
