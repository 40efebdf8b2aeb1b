//! The machine a model is trained for (`drsn train`): what the physics second opinion on
//! its diagnoses needs, written to the card's `machine`.

use anyhow::{bail, Context};
use clap::Args;

use crate::physics::Bearing;
use crate::registry::MachineInfo;

#[derive(Debug, Args)]
pub struct MachineArgs {
    /// The bearing, from the built-in table: `6205-2RS JEM SKF` (`cwru-de`), `6203-2RS JEM SKF` (`cwru-fe`).
    #[arg(long, env = "DRSN_BEARING")]
    pub bearing: Option<String>,
    /// Nominal shaft speed, rpm.
    #[arg(long, env = "DRSN_SHAFT_RPM")]
    pub shaft_rpm: Option<f64>,
    /// The speeds the machine runs at, `LOW:HIGH` rpm: where the shaft speed is looked for.
    #[arg(long, env = "DRSN_SHAFT_RPM_RANGE", value_name = "LOW:HIGH")]
    pub shaft_rpm_range: Option<String>,
    /// The sensor's unit: `g`, `m/s^2` or `unknown` (the velocity severity needs it).
    #[arg(long, env = "DRSN_SENSOR_UNIT")]
    pub sensor_unit: Option<String>,
    /// ISO 20816-3 machine group: group1_rigid, group1_flexible, group2_rigid, group2_flexible.
    #[arg(long, env = "DRSN_ISO_GROUP")]
    pub iso_group: Option<String>,
    /// The fault family of a class whose name does not say it, `CLASS=FAMILY` (normal,
    /// inner_race, outer_race, ball, cage, other). Repeatable.
    #[arg(long = "family", value_name = "CLASS=FAMILY")]
    pub families: Vec<String>,
}

/// A serde enum's value from its JSON name.
fn named<T: serde::de::DeserializeOwned>(flag: &str, text: &str) -> anyhow::Result<T> {
    serde_json::from_value(serde_json::Value::String(text.trim().to_string()))
        .with_context(|| format!("{flag} {text:?} is not one of the accepted values (see --help)"))
}

impl MachineArgs {
    /// `None` when no flag was given.
    pub fn machine(&self) -> anyhow::Result<Option<MachineInfo>> {
        let given = self.bearing.is_some()
            || self.shaft_rpm.is_some()
            || self.shaft_rpm_range.is_some()
            || self.sensor_unit.is_some()
            || self.iso_group.is_some()
            || !self.families.is_empty();
        if !given {
            return Ok(None);
        }
        if let Some(name) = &self.bearing {
            if Bearing::named(name).is_none() {
                bail!("--bearing {name:?} is not in the built-in table (6205-2RS JEM SKF, 6203-2RS JEM SKF)");
            }
        }
        let speed = |v: f64| v.is_finite() && (1.0..=100_000.0).contains(&v);
        if let Some(rpm) = self.shaft_rpm {
            anyhow::ensure!(speed(rpm), "--shaft-rpm {rpm} is not a shaft speed (1 to 100000 rpm)");
        }
        let range = match &self.shaft_rpm_range {
            None => None,
            Some(text) => {
                let (low, high) = text.split_once(':').context("--shaft-rpm-range takes LOW:HIGH, e.g. 1700:1850")?;
                let (low, high): (f64, f64) = (
                    low.trim().parse().context("--shaft-rpm-range: LOW is not a number")?,
                    high.trim().parse().context("--shaft-rpm-range: HIGH is not a number")?,
                );
                anyhow::ensure!(
                    speed(low) && speed(high) && low < high,
                    "--shaft-rpm-range {text}: need 1 <= LOW < HIGH <= 100000"
                );
                Some([low, high])
            }
        };
        let mut families = std::collections::BTreeMap::new();
        for pair in &self.families {
            let (class, family) =
                pair.split_once('=').with_context(|| format!("--family {pair:?}: use CLASS=FAMILY"))?;
            families.insert(class.trim().to_string(), named("--family", family)?);
        }
        Ok(Some(MachineInfo {
            shaft_rpm: self.shaft_rpm,
            shaft_rpm_range: range,
            bearing: self.bearing.clone(),
            sensor_unit: self.sensor_unit.as_deref().map(|u| named("--sensor-unit", u)).transpose()?,
            iso_group: self.iso_group.as_deref().map(|g| named("--iso-group", g)).transpose()?,
            families,
        }))
    }
}
