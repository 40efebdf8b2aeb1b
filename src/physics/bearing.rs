//! Bearings by geometry, the kinematic defect frequencies they give at a shaft rate, and
//! the fault families a class can belong to.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A rolling-element bearing's geometry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bearing {
    /// A designation, e.g. `6205-2RS JEM SKF`.
    pub name: String,
    /// Rolling elements.
    pub elements: u32,
    /// Rolling-element diameter and pitch diameter, in any one unit.
    pub element_diameter: f64,
    pub pitch_diameter: f64,
    /// Contact angle in degrees.
    pub contact_angle_deg: f64,
}

impl Bearing {
    /// The CWRU rig's drive-end bearing (the data center's table).
    pub fn cwru_drive_end() -> Bearing {
        Bearing {
            name: "6205-2RS JEM SKF".into(),
            elements: 9,
            element_diameter: 0.3126,
            pitch_diameter: 1.537,
            contact_angle_deg: 0.0,
        }
    }

    /// The CWRU rig's fan-end bearing.
    pub fn cwru_fan_end() -> Bearing {
        Bearing {
            name: "6203-2RS JEM SKF".into(),
            elements: 8,
            element_diameter: 0.2656,
            pitch_diameter: 1.122,
            contact_angle_deg: 0.0,
        }
    }

    /// A bearing of the built-in table by designation (case-insensitive, spaces ignored),
    /// or by the CWRU names `cwru-de` and `cwru-fe`.
    pub fn named(name: &str) -> Option<Bearing> {
        let key: String = name.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_lowercase();
        match key.as_str() {
            "cwru-de" | "6205-2rsjemskf" | "6205-2rs" | "6205" => Some(Bearing::cwru_drive_end()),
            "cwru-fe" | "6203-2rsjemskf" | "6203-2rs" | "6203" => Some(Bearing::cwru_fan_end()),
            _ => None,
        }
    }

    /// Defect frequencies as multiples of the shaft rate (orders), from the kinematic
    /// formulas (Randall & Antoni, MSSP 25 (2011) 485-520).
    pub fn orders(&self) -> DefectFrequencies {
        let ratio = self.element_diameter / self.pitch_diameter * self.contact_angle_deg.to_radians().cos();
        let n = f64::from(self.elements);
        DefectFrequencies {
            ftf: 0.5 * (1.0 - ratio),
            bpfo: n / 2.0 * (1.0 - ratio),
            bpfi: n / 2.0 * (1.0 + ratio),
            bsf: self.pitch_diameter / (2.0 * self.element_diameter) * (1.0 - ratio * ratio),
        }
    }
}

/// Defect frequencies: in orders (multiples of the shaft rate), or in Hz once scaled.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DefectFrequencies {
    /// Fundamental train (cage).
    pub ftf: f64,
    /// Ball pass, outer race.
    pub bpfo: f64,
    /// Ball pass, inner race.
    pub bpfi: f64,
    /// Ball (rolling element) spin.
    pub bsf: f64,
}

impl DefectFrequencies {
    pub fn scaled(&self, shaft_hz: f64) -> DefectFrequencies {
        DefectFrequencies {
            ftf: self.ftf * shaft_hz,
            bpfo: self.bpfo * shaft_hz,
            bpfi: self.bpfi * shaft_hz,
            bsf: self.bsf * shaft_hz,
        }
    }
}

/// What kind of fault a class is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FaultFamily {
    Normal,
    InnerRace,
    OuterRace,
    Ball,
    Cage,
    Other,
}

impl FaultFamily {
    pub const DEFECTS: [FaultFamily; 4] =
        [FaultFamily::InnerRace, FaultFamily::OuterRace, FaultFamily::Ball, FaultFamily::Cage];

    /// The family a class name says, by the names in common use (`normal`, `IR007`,
    /// `OR014@6`, `B021`, `inner_race`, `ball`...).
    pub fn from_class(name: &str) -> FaultFamily {
        let n = name.to_ascii_lowercase();
        let starts = |p: &str| {
            n.starts_with(p) && n.get(p.len()..).and_then(|r| r.chars().next()).is_none_or(|c| !c.is_ascii_alphabetic())
        };
        if n.contains("normal") || n == "healthy" || n == "ok" {
            FaultFamily::Normal
        } else if n.contains("inner") || starts("ir") {
            FaultFamily::InnerRace
        } else if n.contains("outer") || starts("or") {
            FaultFamily::OuterRace
        } else if n.contains("ball") || n.contains("roller") || starts("b") {
            FaultFamily::Ball
        } else if n.contains("cage") {
            FaultFamily::Cage
        } else {
            FaultFamily::Other
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FaultFamily::Normal => "normal",
            FaultFamily::InnerRace => "inner_race",
            FaultFamily::OuterRace => "outer_race",
            FaultFamily::Ball => "ball",
            FaultFamily::Cage => "cage",
            FaultFamily::Other => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cwru_bearings_give_the_data_centers_orders() {
        let de = Bearing::cwru_drive_end().orders();
        // The data center's table: BPFI 5.4152, BPFO 3.5848, FTF 0.39828, 2 x BSF 4.7135.
        assert!((de.bpfi - 5.4152).abs() < 1e-3, "{de:?}");
        assert!((de.bpfo - 3.5848).abs() < 1e-3, "{de:?}");
        assert!((de.ftf - 0.39828).abs() < 1e-4, "{de:?}");
        assert!((2.0 * de.bsf - 4.7135).abs() < 2e-3, "{de:?}");
        let fe = Bearing::named("6203-2RS JEM SKF").unwrap().orders();
        assert!((fe.bpfi - 4.9469).abs() < 1e-3 && (fe.bpfo - 3.0530).abs() < 1e-3, "{fe:?}");
        assert!((2.0 * fe.bsf - 3.9874).abs() < 2e-3, "{fe:?}");
        let hz = de.scaled(1797.0 / 60.0);
        assert!((hz.bpfo - 107.4).abs() < 0.2, "{hz:?}");
    }

    #[test]
    fn classes_map_to_families_by_their_names() {
        for (class, family) in [
            ("normal", FaultFamily::Normal),
            ("IR007", FaultFamily::InnerRace),
            ("OR014", FaultFamily::OuterRace),
            ("OR007@6", FaultFamily::OuterRace),
            ("B021", FaultFamily::Ball),
            ("inner_race", FaultFamily::InnerRace),
            ("misalignment", FaultFamily::Other),
        ] {
            assert_eq!(FaultFamily::from_class(class), family, "{class}");
        }
    }
}
