//! Reading a configuration of any format for `check` and `simulate`: the `--as` and version
//! options, and the call into `ballast-import`.

use std::path::Path;

use clap::{Args, ValueEnum};

use ballast_core::LoadError;
use ballast_import::{Format, Imported, NginxContext, Options, Version};

/// How to read the configuration files.
#[derive(Args, Clone, Debug)]
pub struct InputArgs {
    /// The format of the files; detected from their content when not given.
    #[arg(id = "input_format", long = "as", value_enum, value_name = "FORMAT")]
    input_format: Option<AsFormat>,
    /// HAProxy version whose defaults apply (Debian 12 ships 2.6).
    #[arg(long, value_name = "X.Y", default_value = "2.6")]
    haproxy_version: Version,
    /// nginx version whose defaults apply (Debian 12 ships 1.22).
    #[arg(long, value_name = "X.Y", default_value = "1.22")]
    nginx_version: Version,
    /// An environment variable for HAProxy's "${VAR}" / $VAR (repeatable); the process
    /// environment is read for the others.
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// The nginx context of the file's top level: `main` for a whole nginx.conf, `http` or
    /// `stream` for a fragment included there (conf.d/*.conf). Detected when not given.
    #[arg(long, value_enum, value_name = "CONTEXT")]
    context: Option<ContextArg>,
    /// Where nginx's stock include files (mime.types, *_params, snippets/) are read from when
    /// they are not beside the file.
    #[arg(long, value_name = "DIR", default_value = "/etc/nginx")]
    nginx_prefix: std::path::PathBuf,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ContextArg {
    Main,
    Http,
    Stream,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not NAME=VALUE")),
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum AsFormat {
    Ballast,
    Haproxy,
    Nginx,
}

impl InputArgs {
    fn options(&self) -> Options {
        Options {
            format: self.input_format.map(|f| match f {
                AsFormat::Ballast => Format::Ballast,
                AsFormat::Haproxy => Format::Haproxy,
                AsFormat::Nginx => Format::Nginx,
            }),
            haproxy_version: self.haproxy_version,
            nginx_version: self.nginx_version,
            // The process environment first, so `--env` (read last) wins.
            env: std::env::vars().chain(self.env.iter().cloned()).collect(),
            nginx_context: self.context.map(|c| match c {
                ContextArg::Main => NginxContext::Main,
                ContextArg::Http => NginxContext::Http,
                ContextArg::Stream => NginxContext::Stream,
            }),
            nginx_prefix: self.nginx_prefix.clone(),
        }
    }

    pub fn load(&self, path: &Path) -> Result<Imported, LoadError> {
        ballast_import::import_file(path, &self.options())
    }
}
