//! Reading a configuration of any format for `check` and `simulate`: the `--as` and version
//! options, and the call into `ballast-import`.

use std::path::Path;

use clap::{Args, ValueEnum};

use ballast_core::LoadError;
use ballast_import::{Format, Imported, Options, Version};

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
        }
    }

    pub fn load(&self, path: &Path) -> Result<Imported, LoadError> {
        ballast_import::import_file(path, &self.options())
    }
}
