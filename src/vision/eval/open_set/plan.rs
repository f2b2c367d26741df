//! The splits of an open-set evaluation: which people calibrate, which are residents of which gallery, which
//! approaches each person makes. Pure: built from the people's photos and a seed, the same for facegate and
//! for a peer, so both are measured on exactly the same searches.

use rand::seq::SliceRandom;
use rand::SeedableRng;

/// One person of the labelled folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Person {
    /// Their photos (sample indices), in file order.
    pub samples: Vec<usize>,
    /// The photos the gate's enrolment took (the quality gate, liveness where checked, K consistent
    /// frames), or `None` when it could not enrol them.
    pub enrolment: Option<Vec<usize>>,
}

impl Person {
    /// Their photos that were not used to enrol them.
    pub fn probes(&self) -> Vec<usize> {
        let used = self.enrolment.as_deref().unwrap_or_default();
        self.samples.iter().copied().filter(|s| !used.contains(s)).collect()
    }

    /// Can be a resident: enrolled, with at least one photo left to approach the gate with.
    pub fn can_be_resident(&self) -> bool {
        self.enrolment.is_some() && !self.probes().is_empty()
    }
}

/// One gallery of one fold: who is enrolled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Draw {
    /// The nominal gallery size.
    pub size: usize,
    /// The residents (person indices), in enrolment order.
    pub residents: Vec<usize>,
}

/// One fold: the people it calibrates on, the people it evaluates, its galleries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fold {
    /// People whose impostor scores set the threshold.
    pub calibration: Vec<usize>,
    /// People the fold measures on (never in `calibration`).
    pub evaluation: Vec<usize>,
    /// The galleries, drawn from `evaluation`.
    pub draws: Vec<Draw>,
}

/// How to split.
#[derive(Clone, Debug, PartialEq)]
pub struct SplitRule {
    /// Folds of people (at least 2).
    pub folds: usize,
    /// Times the people are dealt into folds afresh (repeated cross-validation: more galleries of the
    /// largest size, more strangers' approaches).
    pub repeats: usize,
    /// Gallery sizes asked for; each is capped at the residents a fold can have, and the largest possible
    /// gallery is always included.
    pub gallery_sizes: Vec<usize>,
    /// Random galleries per size smaller than the largest.
    pub draws: usize,
    /// Seed of every random choice.
    pub seed: u64,
}

/// Splits the people into folds by person, `repeats` times over, and draws the galleries of each fold.
pub fn split(people: &[Person], rule: &SplitRule) -> Vec<Fold> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(rule.seed);
    (0..rule.repeats.max(1)).flat_map(|_| deal(people, rule, &mut rng)).collect()
}

fn deal(people: &[Person], rule: &SplitRule, rng: &mut rand_chacha::ChaCha8Rng) -> Vec<Fold> {
    let folds = rule.folds.max(2);
    // Deal residents-to-be and the others separately, so every fold gets its share of both.
    let (mut able, mut others): (Vec<usize>, Vec<usize>) =
        (0..people.len()).partition(|&p| people[p].can_be_resident());
    able.shuffle(rng);
    others.shuffle(rng);
    let mut members = vec![Vec::new(); folds];
    for (i, &p) in able.iter().chain(&others).enumerate() {
        members[i % folds].push(p);
    }
    let largest = members.iter().map(|m| m.iter().filter(|&&p| people[p].can_be_resident()).count()).min().unwrap_or(0);
    let mut sizes: Vec<usize> = rule.gallery_sizes.iter().copied().filter(|&s| s > 0 && s < largest).collect();
    sizes.push(largest);
    sizes.sort_unstable();
    sizes.dedup();
    (0..folds)
        .map(|f| {
            let mut evaluation = members[f].clone();
            evaluation.sort_unstable();
            let mut calibration: Vec<usize> =
                members.iter().enumerate().filter(|(g, _)| *g != f).flat_map(|(_, m)| m.clone()).collect();
            calibration.sort_unstable();
            let candidates: Vec<usize> = evaluation.iter().copied().filter(|&p| people[p].can_be_resident()).collect();
            let mut draws = Vec::new();
            for &size in &sizes {
                let times = if size >= candidates.len() { 1 } else { rule.draws.max(1) };
                for _ in 0..times {
                    let mut residents = candidates.clone();
                    residents.shuffle(rng);
                    residents.truncate(size);
                    draws.push(Draw { size, residents });
                }
            }
            Fold { calibration, evaluation, draws }
        })
        .collect()
}

/// The frames of an approach: `len` photos from `pool`, starting at position `start` and taking the next ones
/// in turn, round again when the pool is shorter than the approach.
pub fn approach(pool: &[usize], start: usize, len: usize) -> Vec<usize> {
    if pool.is_empty() {
        return Vec::new();
    }
    (0..len).map(|k| pool[(start + k) % pool.len()]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn people() -> Vec<Person> {
        (0..40)
            .map(|p| {
                let samples: Vec<usize> = (p * 5..p * 5 + if p % 2 == 0 { 5 } else { 1 }).collect();
                let enrolment = (p % 2 == 0).then(|| samples[..3].to_vec());
                Person { samples, enrolment }
            })
            .collect()
    }

    #[test]
    fn folds_keep_people_apart_and_galleries_inside_their_fold() {
        let people = people();
        let rule = SplitRule { folds: 2, repeats: 3, gallery_sizes: vec![3, 100], draws: 4, seed: 9 };
        let folds = split(&people, &rule);
        assert_eq!(folds.len(), 6, "2 folds, dealt 3 times");
        assert_ne!(folds[0].evaluation, folds[2].evaluation, "each repeat deals the people afresh");
        for fold in &folds {
            assert!(fold.calibration.iter().all(|p| !fold.evaluation.contains(p)), "calibrated on evaluated people");
            assert_eq!(fold.calibration.len() + fold.evaluation.len(), 40);
            // 10 residents per fold at most: sizes 3 (4 draws) and 10 (the largest, once); 100 is capped away.
            let sizes: Vec<usize> = fold.draws.iter().map(|d| d.size).collect();
            assert_eq!(sizes, vec![3, 3, 3, 3, 10]);
            for draw in &fold.draws {
                assert_eq!(draw.residents.len(), draw.size);
                assert!(draw.residents.iter().all(|p| fold.evaluation.contains(p) && people[*p].can_be_resident()));
            }
        }
        assert_eq!(split(&people, &rule), folds, "the same seed gives the same splits");
    }

    #[test]
    fn approaches_take_the_other_photos_in_turn() {
        assert_eq!(approach(&[4, 7], 1, 3), vec![7, 4, 7]);
        assert_eq!(approach(&[1, 2, 3, 4], 2, 3), vec![3, 4, 1]);
        assert!(approach(&[], 0, 3).is_empty());
        let person = Person { samples: vec![0, 1, 2, 3], enrolment: Some(vec![0, 2, 3]) };
        assert_eq!(person.probes(), vec![1]);
        assert!(person.can_be_resident());
        assert!(!Person { samples: vec![0, 1, 2], enrolment: Some(vec![0, 1, 2]) }.can_be_resident());
    }
}
