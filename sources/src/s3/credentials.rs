//! Where the store's credentials come from: the environment, else a profile of the shared
//! credentials file, as the AWS tools look for them. Their values never reach a message.

use std::path::{Path, PathBuf};

use rusty_s3::Credentials;

/// Credentials and where they were found (`the environment (AWS_ACCESS_KEY_ID)`, `profile
/// default in /root/.aws/credentials`), for messages. Their `Debug` shows no secret.
#[derive(Debug)]
pub(crate) struct FoundCredentials {
    pub(crate) credentials: Credentials,
    pub(crate) origin: String,
}

/// What the lookup reads, so that tests need not change the process's environment.
pub(crate) trait Environment {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process's environment.
pub(crate) struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|value| !value.is_empty())
    }
}

/// The credentials to sign with: `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (and
/// `AWS_SESSION_TOKEN`), else `profile` (or `AWS_PROFILE`, or `default`) in the shared
/// credentials file; an error says what was looked for and how to provide it.
pub(crate) fn find_credentials(
    profile: Option<&str>,
    environment: &dyn Environment,
) -> Result<FoundCredentials, String> {
    let key = environment.var("AWS_ACCESS_KEY_ID");
    let secret = environment.var("AWS_SECRET_ACCESS_KEY");
    match (key, secret) {
        (Some(key), Some(secret)) => {
            let credentials = match environment.var("AWS_SESSION_TOKEN") {
                Some(token) => Credentials::new_with_token(key, secret, token),
                None => Credentials::new(key, secret),
            };
            return Ok(FoundCredentials {
                credentials,
                origin: "the environment (AWS_ACCESS_KEY_ID)".to_owned(),
            });
        }
        (Some(_), None) => {
            return Err(
                "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not; set both".to_owned(),
            )
        }
        (None, Some(_)) => {
            return Err(
                "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not; set both".to_owned(),
            )
        }
        (None, None) => {}
    }
    let profile = profile
        .map(str::to_owned)
        .or_else(|| environment.var("AWS_PROFILE"))
        .unwrap_or_else(|| "default".to_owned());
    let Some(file) = credentials_file(environment) else {
        return Err(no_credentials(&profile, None));
    };
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(error) => {
            return Err(format!(
                "no credentials for the store: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are \
                 not set and the shared credentials file {} cannot be read ({error}); set them, \
                 or write profile {profile} there (or point AWS_SHARED_CREDENTIALS_FILE at one)",
                file.display()
            ))
        }
    };
    let section = profile_section(&text, &profile);
    let value = |name: &str| {
        section
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.clone())
    };
    match (value("aws_access_key_id"), value("aws_secret_access_key")) {
        (Some(key), Some(secret)) => Ok(FoundCredentials {
            credentials: match value("aws_session_token") {
                Some(token) => Credentials::new_with_token(key, secret, token),
                None => Credentials::new(key, secret),
            },
            origin: format!("profile {profile} in {}", file.display()),
        }),
        _ => Err(no_credentials(&profile, Some(&file))),
    }
}

fn credentials_file(environment: &dyn Environment) -> Option<PathBuf> {
    if let Some(file) = environment.var("AWS_SHARED_CREDENTIALS_FILE") {
        return Some(PathBuf::from(file));
    }
    environment
        .var("HOME")
        .map(|home| Path::new(&home).join(".aws").join("credentials"))
}

fn no_credentials(profile: &str, file: Option<&Path>) -> String {
    let looked_in = match file {
        Some(file) => format!(
            "profile {profile} has no aws_access_key_id and aws_secret_access_key in {}",
            file.display()
        ),
        None => "no shared credentials file (HOME is not set)".to_owned(),
    };
    format!(
        "no credentials for the store: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not \
         set and {looked_in}; set them, or give `profile` a profile of \
         AWS_SHARED_CREDENTIALS_FILE"
    )
}

/// The `key = value` lines of `[profile]` in an INI-style credentials file.
fn profile_section(text: &str, profile: &str) -> Vec<(String, String)> {
    let mut in_section = false;
    let mut entries = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
        {
            in_section = name.trim() == profile;
            continue;
        }
        if let (true, Some((key, value))) = (in_section, line.split_once('=')) {
            entries.push((key.trim().to_owned(), value.trim().to_owned()));
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    struct Variables(HashMap<&'static str, String>);

    impl Environment for Variables {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).cloned()
        }
    }

    fn variables(pairs: &[(&'static str, &str)]) -> Variables {
        Variables(
            pairs
                .iter()
                .map(|(name, value)| (*name, (*value).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn the_environment_comes_first_and_its_values_are_never_in_the_origin() {
        let found = find_credentials(
            None,
            &variables(&[
                ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
                ("AWS_SECRET_ACCESS_KEY", "secret-value"),
                ("AWS_SESSION_TOKEN", "token-value"),
            ]),
        )
        .unwrap();
        assert_eq!(found.credentials.key(), "AKIDEXAMPLE");
        assert_eq!(found.credentials.token(), Some("token-value"));
        assert!(!found.origin.contains("AKIDEXAMPLE") && !found.origin.contains("secret"));
    }

    #[test]
    fn a_profile_of_the_shared_file_is_read_and_half_a_pair_is_refused() {
        let directory = tempfile::tempdir().unwrap();
        let file = directory.path().join("credentials");
        std::fs::write(
            &file,
            "[default]\naws_access_key_id = DEFAULTKEY\naws_secret_access_key = a\n\n\
             # the channel's own\n[channel]\naws_access_key_id=CHANNELKEY\naws_secret_access_key=b\n",
        )
        .unwrap();
        let file = file.display().to_string();
        let shared = [("AWS_SHARED_CREDENTIALS_FILE", file.as_str())];
        let found = find_credentials(Some("channel"), &variables(&shared)).unwrap();
        assert_eq!(found.credentials.key(), "CHANNELKEY");
        assert_eq!(found.origin, format!("profile channel in {file}"));
        let with_profile = [shared[0], ("AWS_PROFILE", "default")];
        let found = find_credentials(None, &variables(&with_profile)).unwrap();
        assert_eq!(found.credentials.key(), "DEFAULTKEY");
        let missing = find_credentials(Some("other"), &variables(&shared)).unwrap_err();
        assert!(missing.contains("profile other"), "{missing}");
        let half = find_credentials(None, &variables(&[("AWS_ACCESS_KEY_ID", "x")])).unwrap_err();
        assert!(half.contains("AWS_SECRET_ACCESS_KEY"), "{half}");
    }
}
