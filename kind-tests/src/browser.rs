//! Page tests in a real browser: Debian's headless Chromium driven over WebDriver by
//! chromedriver on loopback, and prow-dashboard started against the test's API server. Every
//! test saves screenshots under `target/screenshots/` for a reviewer to look at.

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::hook::Files;
use crate::process::{free_port, Running};
use crate::TestEnv;

/// Where Debian's chromedriver is.
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Where Debian's Chromium is.
const CHROMIUM: &str = "/usr/bin/chromium";

/// chromedriver and one browser session, ended when dropped.
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    driver: Child,
    /// Chromium's profile, removed after the browser ends (fields drop after `drop`).
    _profile: Files,
    shots: PathBuf,
}

/// The directory screenshots go to: `PROW_TEST_SCREENSHOTS`, else `target/screenshots`.
pub fn screenshot_dir() -> PathBuf {
    std::env::var_os("PROW_TEST_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots"))
}

impl Browser {
    /// Starts chromedriver and a headless Chromium at `width`x`height`; None (after a line
    /// saying why) where they are not installed, an error under `CI=true`.
    pub async fn start(test: &str, width: u32, height: u32) -> anyhow::Result<Option<Self>> {
        if !std::path::Path::new(CHROMEDRIVER).exists() {
            anyhow::ensure!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{CHROMEDRIVER} is missing under CI=true: kind-tests/scripts/test.sh installs \
                 Debian's chromium and chromium-driver"
            );
            eprintln!("page test skipped: {CHROMEDRIVER} is not installed (apt-get install chromium chromium-driver)");
            return Ok(None);
        }
        let port = free_port()?;
        // Its own process group, so that the browsers it starts end with it (killing
        // chromedriver alone leaves Chromium running).
        let driver = Command::new(CHROMEDRIVER)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting chromedriver")?;
        let profile =
            std::env::temp_dir().join(format!("prow-chromium-{}-{}", std::process::id(), port));
        std::fs::create_dir_all(&profile)?;
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                // The machine's network is closed: no background fetches, no Google lookups.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                         "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync",
                         "--disable-dev-shm-usage",
                         format!("--user-data-dir={}", profile.display()),
                         format!("--window-size={width},{height}")],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(error = %e, "chromedriver not up yet");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e).context("starting a Chromium session"),
            }
        };
        let shots = screenshot_dir().join(test);
        std::fs::create_dir_all(&shots)?;
        Ok(Some(Browser {
            client,
            driver,
            _profile: Files(profile),
            shots,
        }))
    }

    /// Opens `url`.
    pub async fn open(&self, url: &str) -> anyhow::Result<()> {
        self.client
            .goto(url)
            .await
            .with_context(|| format!("opening {url}"))
    }

    /// Saves a screenshot as `name.png`; its path.
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let png = self.client.screenshot().await?;
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        eprintln!("screenshot: {}", path.display());
        Ok(path)
    }

    /// Runs `script` in the page; its value.
    pub async fn js(&self, script: &str) -> anyhow::Result<Value> {
        Ok(self.client.execute(script, vec![]).await?)
    }

    /// The visible text of the first element `css` selects.
    pub async fn text(&self, css: &str) -> anyhow::Result<String> {
        Ok(self
            .client
            .find(Locator::Css(css))
            .await
            .with_context(|| format!("no element {css}"))?
            .text()
            .await?)
    }

    /// Clicks the first element `css` selects.
    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        self.client
            .find(Locator::Css(css))
            .await
            .with_context(|| format!("no element {css}"))?
            .click()
            .await?;
        Ok(())
    }

    /// Types `text` into the first element `css` selects.
    pub async fn type_into(&self, css: &str, text: &str) -> anyhow::Result<()> {
        self.client
            .find(Locator::Css(css))
            .await
            .with_context(|| format!("no element {css}"))?
            .send_keys(text)
            .await?;
        Ok(())
    }

    /// How many elements `css` selects.
    pub async fn count(&self, css: &str) -> anyhow::Result<usize> {
        Ok(self.client.find_all(Locator::Css(css)).await?.len())
    }

    /// Waits until `check` holds of the page, checking every 100 ms.
    pub async fn until<F, Fut>(
        &self,
        what: &str,
        within: Duration,
        mut check: F,
    ) -> anyhow::Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<bool>>,
    {
        let deadline = Instant::now() + within;
        loop {
            match check().await {
                Ok(true) => return Ok(()),
                Ok(false) | Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Ok(false) => anyhow::bail!("{what}: not within {within:?}"),
                Err(e) => return Err(e).context(format!("{what}: not within {within:?}")),
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group chromedriver leads; no memory is touched.
        unsafe {
            libc::kill(-(self.driver.id() as i32), libc::SIGKILL);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// prow-dashboard started for a test's namespace.
pub struct Dashboard {
    /// The process.
    pub process: Running,
    _dir: Files,
}

impl Dashboard {
    /// Starts prow-dashboard on `env`'s API server showing `env`'s namespace, with `extra`
    /// flags; `s3_credentials` (upstream's service-account.json) when runs' logs are read.
    pub fn start(
        env: &TestEnv,
        s3_credentials: Option<&str>,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("prow-dashboard-{}", env.namespace));
        std::fs::create_dir_all(&dir)?;
        let mut args = vec![
            format!("--namespace={}", env.namespace),
            format!("--pod-namespace={}", env.namespace),
        ];
        if let Some(creds) = s3_credentials {
            std::fs::write(dir.join("service-account.json"), creds)?;
            args.push(format!(
                "--s3-credentials-file={}",
                dir.join("service-account.json").display()
            ));
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let process = Running::start("prow-dashboard", &env.kubeconfig, &args)?;
        Ok(Dashboard {
            process,
            _dir: Files(dir),
        })
    }

    /// The URL of `path` on the dashboard.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.process.health)
    }
}
