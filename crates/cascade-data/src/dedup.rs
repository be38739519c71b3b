//! Deduplication and split decisions over the signature pass's records: exact dedup by
//! 128-bit hash, near-duplicate clusters from MinHash-LSH buckets, same-work clusters from
//! MinHash agreement counts, union-find clustering and the cluster-hash split.
//!
//! Keepers are always the first member in corpus order (files sorted by path, records in file
//! order), so the outcome does not depend on thread scheduling or on how the corpus was
//! sharded.

use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::config::{DataConfig, SameWorkAction, Verify};
use crate::minhash::{band_keys, estimate_jaccard, jaccard};
use crate::report::Rejection;
use crate::sign::DocRecord;

/// What happens to one document.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Fate {
    /// Rejected by a quality filter.
    Filtered(Rejection),
    /// Same normalized text as the earlier document `of`.
    ExactDuplicate { of: usize },
    /// Near-duplicate of the cluster keeper `of`.
    NearDuplicate { of: usize },
    /// Another edition of the same-work keeper `of` (`action = "deduplicate"`).
    SameWorkDuplicate { of: usize },
    /// Kept, in the split group represented by document `group`.
    Kept { group: usize, val: bool },
}

/// A cluster: keeper first, then members with their similarity to the keeper.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PlannedCluster {
    pub keeper: usize,
    /// (document, estimated similarity, exact similarity when known), keeper included first.
    pub members: Vec<(usize, f64, Option<f64>)>,
}

/// Every decision of the dedup and split steps.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub fates: Vec<Option<Fate>>,
    pub exact_clusters: Vec<PlannedCluster>,
    pub near_clusters: Vec<PlannedCluster>,
    pub same_work_clusters: Vec<PlannedCluster>,
    pub near_candidate_pairs: u64,
    pub near_confirmed_pairs: u64,
    pub same_work_candidate_pairs: u64,
    pub same_work_confirmed_pairs: u64,
    pub candidates_s: f64,
    pub verify_s: f64,
    pub cluster_s: f64,
}

impl Plan {
    /// The fate of document `idx` (every document has one once planning is done).
    pub fn fate(&self, idx: usize) -> Fate {
        self.fates[idx].unwrap_or(Fate::Kept { group: idx, val: false })
    }

    /// Whether the kept document that stands for `idx` went to validation.
    pub fn resolved_val(&self, mut idx: usize) -> bool {
        for _ in 0..self.fates.len() {
            match self.fate(idx) {
                Fate::Kept { val, .. } => return val,
                Fate::ExactDuplicate { of } | Fate::NearDuplicate { of } | Fate::SameWorkDuplicate { of } => idx = of,
                Fate::Filtered(_) => return false,
            }
        }
        false
    }
}

struct UnionFind(Vec<u32>);

impl UnionFind {
    fn new(n: usize) -> Self {
        Self((0..n as u32).collect())
    }

    fn find(&mut self, mut x: u32) -> u32 {
        while self.0[x as usize] != x {
            let parent = self.0[x as usize];
            self.0[x as usize] = self.0[parent as usize];
            x = parent;
        }
        x
    }

    /// Joins two sets; the smaller root (the earlier document) becomes the root.
    fn union(&mut self, a: u32, b: u32) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.0[hi as usize] = lo;
        }
    }
}

/// Components of `edges` over `nodes` (positions into `nodes`) with two or more members, each
/// sorted, ordered by their first member.
fn components(n: usize, edges: impl Iterator<Item = (u32, u32)>) -> Vec<Vec<u32>> {
    let mut uf = UnionFind::new(n);
    for (a, b) in edges {
        uf.union(a, b);
    }
    let mut by_root: FxHashMap<u32, Vec<u32>> = FxHashMap::default();
    for x in 0..n as u32 {
        let root = uf.find(x);
        by_root.entry(root).or_default().push(x);
    }
    let mut out: Vec<Vec<u32>> = by_root.into_values().filter(|c| c.len() > 1).collect();
    for c in &mut out {
        c.sort_unstable();
    }
    out.sort_unstable_by_key(|c| c[0]);
    out
}

fn has_shingles(doc: &DocRecord) -> bool {
    !doc.signature.is_empty() && doc.signature.iter().any(|&v| v != u32::MAX)
}

/// Pairs (positions into `unique`, smaller first) that share at least one LSH bucket.
fn lsh_candidates(docs: &[DocRecord], unique: &[usize], config: &DataConfig) -> Vec<(u32, u32)> {
    let rows = config.dedup.rows;
    let max_bucket = config.dedup.max_bucket_docs;
    let keys: Vec<Vec<u64>> = unique
        .par_iter()
        .map(|&i| if has_shingles(&docs[i]) { band_keys(&docs[i].signature, rows).collect() } else { Vec::new() })
        .collect();
    let per_band: Vec<Vec<(u32, u32)>> = (0..config.dedup.bands)
        .into_par_iter()
        .map(|band| {
            let mut entries: Vec<(u64, u32)> = keys
                .iter()
                .enumerate()
                .filter(|(_, k)| !k.is_empty())
                .map(|(pos, k)| (k[band], pos as u32))
                .collect();
            entries.sort_unstable();
            let mut pairs = Vec::new();
            for run in entries.chunk_by(|a, b| a.0 == b.0).filter(|r| r.len() > 1) {
                if run.len() <= max_bucket {
                    for (i, a) in run.iter().enumerate() {
                        pairs.extend(run[i + 1..].iter().map(|b| (a.1, b.1)));
                    }
                } else {
                    pairs.extend(run[1..].iter().map(|b| (run[0].1, b.1)));
                }
            }
            pairs
        })
        .collect();
    let mut pairs: Vec<(u32, u32)> = per_band.into_iter().flatten().collect();
    pairs.sort_unstable();
    pairs.dedup();
    pairs
}

/// Pairs (positions into `unique`) whose signatures agree on at least `min_agree` values,
/// with their agreement counts. Values shared by more than `max_bucket` documents are skipped.
fn agreement_candidates(docs: &[DocRecord], unique: &[usize], min_agree: u32, max_bucket: usize) -> Vec<((u32, u32), u32)> {
    let mut entries: Vec<(u64, u32)> = Vec::new();
    for (pos, &i) in unique.iter().enumerate() {
        if has_shingles(&docs[i]) {
            entries.extend(docs[i].signature.iter().enumerate().map(|(k, &v)| (((k as u64) << 32) | v as u64, pos as u32)));
        }
    }
    entries.par_sort_unstable();
    let mut counts: FxHashMap<(u32, u32), u32> = FxHashMap::default();
    for run in entries.chunk_by(|a, b| a.0 == b.0).filter(|r| r.len() > 1 && r.len() <= max_bucket) {
        for (i, a) in run.iter().enumerate() {
            for b in &run[i + 1..] {
                *counts.entry((a.1, b.1)).or_insert(0) += 1;
            }
        }
    }
    let mut out: Vec<((u32, u32), u32)> = counts.into_iter().filter(|&(_, c)| c >= min_agree).collect();
    out.sort_unstable();
    out
}

/// Re-reads documents (indices into the records) and returns their shingle sets.
pub(crate) type SetLoader<'a> = dyn FnMut(&[usize]) -> Result<FxHashMap<usize, Vec<u64>>, crate::DataError> + 'a;

/// Plans exact dedup, near dedup, same-work clustering and the split. `load_sets` re-reads
/// the given documents (indices into `docs`) and returns their shingle sets; it is called once,
/// and only with `verify = "exact"`.
pub(crate) fn plan(
    docs: &[DocRecord],
    config: &DataConfig,
    load_sets: &mut SetLoader<'_>,
) -> Result<Plan, crate::DataError> {
    let mut plan = Plan { fates: vec![None; docs.len()], ..Plan::default() };
    let started = std::time::Instant::now();

    // Exact dedup: first occurrence in corpus order wins.
    let mut first_of: FxHashMap<u128, usize> = FxHashMap::default();
    let mut exact_members: FxHashMap<usize, Vec<usize>> = FxHashMap::default();
    let mut unique = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        if let Some(rejection) = doc.rejection {
            plan.fates[i] = Some(Fate::Filtered(rejection));
            continue;
        }
        if config.dedup.exact {
            if let Some(&first) = first_of.get(&doc.exact_hash) {
                plan.fates[i] = Some(Fate::ExactDuplicate { of: first });
                exact_members.entry(first).or_default().push(i);
                continue;
            }
            first_of.insert(doc.exact_hash, i);
        }
        unique.push(i);
    }
    let mut keepers: Vec<usize> = exact_members.keys().copied().collect();
    keepers.sort_unstable();
    for keeper in keepers {
        let mut members = vec![(keeper, 1.0, Some(1.0))];
        members.extend(exact_members[&keeper].iter().map(|&m| (m, 1.0, Some(1.0))));
        plan.exact_clusters.push(PlannedCluster { keeper, members });
    }

    // Candidate pairs (positions into `unique`).
    let verify = config.dedup.verify;
    let num_perm = config.dedup.num_perm();
    let near_pairs = if config.dedup.near { lsh_candidates(docs, &unique, config) } else { Vec::new() };
    let same_work = &config.same_work;
    let same_pairs: Vec<(u32, u32)> = if same_work.enabled {
        // Exact verification rescues pairs whose estimate falls short: check from half the
        // threshold (the estimate's spread at 112 permutations is about 0.03 near 0.15).
        let cutoff = if verify == Verify::Exact { same_work.threshold / 2.0 } else { same_work.threshold };
        let min_agree = ((cutoff * num_perm as f64).ceil() as u32).max(1);
        agreement_candidates(docs, &unique, min_agree, same_work.max_bucket_docs).into_iter().map(|(p, _)| p).collect()
    } else {
        Vec::new()
    };
    plan.near_candidate_pairs = near_pairs.len() as u64;
    plan.same_work_candidate_pairs = same_pairs.len() as u64;
    plan.candidates_s = started.elapsed().as_secs_f64();

    // Verification: exact Jaccard of every candidate pair from re-read shingle sets.
    let started = std::time::Instant::now();
    let sets = if verify == Verify::Exact && !(near_pairs.is_empty() && same_pairs.is_empty()) {
        let mut needed: Vec<usize> =
            near_pairs.iter().chain(&same_pairs).flat_map(|&(a, b)| [unique[a as usize], unique[b as usize]]).collect();
        needed.sort_unstable();
        needed.dedup();
        load_sets(&needed)?
    } else {
        FxHashMap::default()
    };
    plan.verify_s = started.elapsed().as_secs_f64();

    let started = std::time::Instant::now();
    let exact_of = |a: usize, b: usize| match (sets.get(&a), sets.get(&b)) {
        (Some(x), Some(y)) => Some(jaccard(x, y)),
        _ => None,
    };
    let similarity = |a: usize, b: usize| -> f64 {
        exact_of(a, b).unwrap_or_else(|| estimate_jaccard(&docs[a].signature, &docs[b].signature))
    };
    let describe = |cluster: Vec<u32>| {
        let keeper = unique[cluster[0] as usize];
        let members = cluster
            .iter()
            .map(|&p| {
                let m = unique[p as usize];
                let estimated = estimate_jaccard(&docs[keeper].signature, &docs[m].signature);
                (m, estimated, exact_of(keeper, m))
            })
            .collect();
        PlannedCluster { keeper, members }
    };

    // Near-duplicates.
    let threshold = config.dedup.threshold;
    let near_edges: Vec<(u32, u32)> = near_pairs
        .par_iter()
        .copied()
        .filter(|&(a, b)| verify == Verify::None || similarity(unique[a as usize], unique[b as usize]) >= threshold)
        .collect();
    plan.near_confirmed_pairs = near_edges.len() as u64;
    let mut removed: FxHashSet<u32> = FxHashSet::default();
    for cluster in components(unique.len(), near_edges.into_iter()) {
        let planned = describe(cluster.clone());
        for &p in &cluster[1..] {
            removed.insert(p);
            plan.fates[unique[p as usize]] = Some(Fate::NearDuplicate { of: planned.keeper });
        }
        plan.near_clusters.push(planned);
    }

    // Same-work clusters among the survivors.
    let sw_edges: Vec<(u32, u32)> = same_pairs
        .par_iter()
        .copied()
        .filter(|(a, b)| !removed.contains(a) && !removed.contains(b))
        .filter(|&(a, b)| similarity(unique[a as usize], unique[b as usize]) >= same_work.threshold)
        .collect();
    plan.same_work_confirmed_pairs = sw_edges.len() as u64;
    let mut group_of: FxHashMap<usize, usize> = FxHashMap::default();
    for cluster in components(unique.len(), sw_edges.into_iter()) {
        let planned = describe(cluster.clone());
        for &p in &cluster {
            let m = unique[p as usize];
            group_of.insert(m, planned.keeper);
            if m != planned.keeper && same_work.action == SameWorkAction::Deduplicate {
                plan.fates[m] = Some(Fate::SameWorkDuplicate { of: planned.keeper });
            }
        }
        plan.same_work_clusters.push(planned);
    }

    // Split by a hash of each group's first document id.
    let split = &config.split;
    let group_hash = |group: usize| xxh3_64_with_seed(docs[group].id.as_bytes(), split.seed);
    let is_val = |hash: u64| ((hash >> 11) as f64 / (1u64 << 53) as f64) < split.val_fraction;
    let mut groups: Vec<usize> = Vec::new();
    for &i in &unique {
        if plan.fates[i].is_none() {
            let group = group_of.get(&i).copied().unwrap_or(i);
            if group == i {
                groups.push(group);
            }
        }
    }
    let mut val_groups: FxHashSet<usize> = groups.iter().copied().filter(|&g| is_val(group_hash(g))).collect();
    // With few groups the hash may put none (or all) in validation; move the extreme group so
    // both sides exist whenever there are two groups and a non-zero fraction.
    if split.val_fraction > 0.0 && groups.len() >= 2 {
        if val_groups.is_empty() {
            if let Some(&g) = groups.iter().min_by_key(|&&g| (group_hash(g), g)) {
                val_groups.insert(g);
            }
        } else if val_groups.len() == groups.len()
            && let Some(&g) = groups.iter().max_by_key(|&&g| (group_hash(g), g))
        {
            val_groups.remove(&g);
        }
    }
    for &i in &unique {
        if plan.fates[i].is_none() {
            let group = group_of.get(&i).copied().unwrap_or(i);
            plan.fates[i] = Some(Fate::Kept { group, val: val_groups.contains(&group) });
        }
    }
    plan.cluster_s = started.elapsed().as_secs_f64();
    Ok(plan)
}
