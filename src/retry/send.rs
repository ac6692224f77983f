//! Sending a paced request: signed attempts at their slots, retried as the policy says, each
//! retry through the pacer again. Runs on to its end if the caller hangs up once the slot has
//! come (`detach`), so that a group is never left held mid-answer.

use std::sync::{Arc, RwLock};

use bytes::Bytes;
use std::time::Duration;

use tokio::time::Instant;

use super::tally::{Sent, Tally};
use super::{Renew, Resigned, RetryBudget, RetryPolicy, Slow, Verdict};
use crate::error::Error;
use crate::metrics::{ApiMetrics, Metrics};
use crate::pace::{Pacer, Permit};
use crate::signer::Signer;
use crate::upstream::{Reply, Upstream};

/// One request on its way upstream.
#[derive(Debug)]
pub(crate) struct Job {
    /// `service/command`.
    pub api: Arc<str>,
    /// Whether a lost answer may be made good by sending again.
    pub idempotent: bool,
    /// The group whose lane it holds, for attribute writes.
    pub group: Option<Arc<str>>,
    /// The caller's body, unchanged.
    pub body: Bytes,
    /// No attempt starts after this.
    pub deadline: Instant,
    /// The request's id, for log lines.
    pub request_id: String,
    /// Whether each attempt's span is kept for the request's trace.
    pub traced: bool,
}

/// Where a request's attempts stand when the policy has decided on the last one.
struct Tried<'a> {
    /// The last attempt's number (1-based).
    attempt: u32,
    /// The signer's key changes when that attempt was signed.
    key_changes: u64,
    /// The API's retry budget.
    budget: Option<&'a RetryBudget>,
}

/// What the forwarder keeps per allowed API: its retry budget and its metric handles, found
/// with one lookup per send.
#[derive(Debug)]
struct PerApi {
    /// `None` for an API the forwarder was not told of (none today): sent without a budget.
    budget: Option<RetryBudget>,
    metrics: Arc<ApiMetrics>,
}

impl PerApi {
    fn new(ratio: f64, api: &Arc<str>, metrics: &Metrics) -> Arc<PerApi> {
        Arc::new(PerApi {
            budget: Some(RetryBudget::new(ratio)),
            metrics: metrics.api(api.clone()),
        })
    }

    fn unknown(api: &Arc<str>, metrics: &Metrics) -> Arc<PerApi> {
        Arc::new(PerApi {
            budget: None,
            metrics: metrics.api(api.clone()),
        })
    }
}

/// What attempts need: the signer, the client, the pacer for retries, the policy and budgets.
#[derive(Debug)]
pub(crate) struct Forwarder {
    signer: Arc<Signer>,
    upstream: Upstream,
    pacer: Pacer,
    policy: RwLock<RetryPolicy>,
    apis: RwLock<crate::FastMap<Arc<str>, Arc<PerApi>>>,
    metrics: Metrics,
}

impl Forwarder {
    /// Bundles the collaborators of an attempt, with a retry budget per API.
    pub(crate) fn new(
        signer: Arc<Signer>,
        upstream: Upstream,
        pacer: Pacer,
        config: &crate::config::Config,
        apis: &[Arc<str>],
        metrics: Metrics,
    ) -> Forwarder {
        let ratio = config.retry.budget_ratio;
        let apis = apis
            .iter()
            .map(|api| (api.clone(), PerApi::new(ratio, api, &metrics)))
            .collect();
        let policy = RetryPolicy::new(&config.retry, config.limits.window_guard);
        Forwarder {
            signer,
            upstream,
            pacer,
            policy: RwLock::new(policy),
            apis: RwLock::new(apis),
            metrics,
        }
    }

    /// A reloaded retry policy and budget ratio; budgets of newly allowed APIs start fresh,
    /// the others keep their balance.
    pub(crate) fn reconfigure(&self, config: &crate::config::Config, apis: &[Arc<str>]) {
        let policy = RetryPolicy::new(&config.retry, config.limits.window_guard);
        *self
            .policy
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = policy;
        let ratio = config.retry.budget_ratio;
        let mut known = self
            .apis
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for api in apis {
            let per_api = known
                .entry(api.clone())
                .or_insert_with(|| PerApi::new(ratio, api, &self.metrics));
            if let Some(budget) = &per_api.budget {
                budget.set_ratio(ratio);
            }
        }
    }

    /// Sends the job now (the permit's slot has come), retrying as the policy allows, and returns
    /// the last outcome with the send's tally. The permit, and with it the group's lane, is
    /// released at the end.
    pub(crate) async fn send(self: Arc<Self>, job: Job, permit: Permit) -> Sent {
        // On the caller's task while the caller waits; a task of its own only if the caller
        // hangs up, so that a send under way is never cut off. A task per send cost about
        // 1,000 instructions per request (cargo bench --bench load -- instructions).
        super::detach::Detached::new(self.run(job, permit)).await
    }

    async fn run(self: Arc<Self>, job: Job, permit: Permit) -> Sent {
        let mut tally = Tally::new(permit.claimed());
        let result = self.attempts(&job, permit, &mut tally).await;
        Sent { result, tally }
    }

    async fn attempts(
        &self,
        job: &Job,
        mut permit: Permit,
        tally: &mut Tally,
    ) -> Result<Reply, Error> {
        let policy = self
            .policy
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        // An API not allowed when the forwarder was made or reloaded (none today) is sent
        // without a budget.
        let per_api = self
            .apis
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&job.api)
            .cloned()
            .unwrap_or_else(|| PerApi::unknown(&job.api, &self.metrics));
        let budget = per_api.budget.as_ref();
        if let Some(budget) = budget {
            budget.deposit();
        }
        let (mut attempt, mut done) = (1, Resigned::default());
        // An earlier attempt may have reached Tencent with its answer lost.
        let mut unsure = false;
        loop {
            if permit.expired() {
                // Its slot passed while this task waited to run: it counts as sent (it was
                // claimed), and the call goes at a new slot, or is answered busy.
                permit.landed();
                self.pacer.reacquire(&mut permit, job.deadline).await?;
                continue;
            }
            let key_changes = self.signer.key_changes();
            let start = Instant::now();
            let outcome = self.attempt(&per_api.metrics, job.body.clone()).await;
            let end = Instant::now();
            let took = tally.attempted((start, end), &outcome, permit.limiter(), job.traced);
            per_api
                .metrics
                .upstream_duration()
                .observe(took.as_secs_f64());
            permit.landed();
            let outcome = super::settle(&job.api, outcome, unsure);
            unsure |= super::unsure(&outcome);
            let verdict = policy.decide(&outcome, attempt, job.idempotent, done);
            let tried = Tried {
                attempt,
                key_changes,
                budget,
            };
            let Some(delay) = self.prepare_retry(job, verdict, &tried, &mut done) else {
                return outcome;
            };
            tokio::time::sleep(delay).await;
            // A new slot in both lanes; the group stays held, so no later write overtakes this.
            if self
                .pacer
                .reacquire(&mut permit, job.deadline)
                .await
                .is_err()
            {
                return outcome;
            }
            attempt += 1;
        }
    }

    /// Carries out the policy's verdict up to the retry's wait: `None` when the outcome is the
    /// answer (the policy says so, the key did not change, the deadline or the budget would be
    /// passed); otherwise the signature renewed and the lane slowed as asked, the retry
    /// counted and logged, and the delay to wait.
    fn prepare_retry(
        &self,
        job: &Job,
        verdict: Verdict,
        tried: &Tried<'_>,
        done: &mut Resigned,
    ) -> Option<Duration> {
        let Verdict::Retry {
            reason,
            delay,
            renew,
            slow,
        } = verdict
        else {
            return None;
        };
        // 70009 right after the Secret was rotated: the file may hold the new key already.
        // Worth a retry only if the key changed since this attempt was signed (found here, in
        // another call or in the periodic look).
        if renew == Renew::KeyIfChanged && !self.key_changed_since(tried.key_changes) {
            return None;
        }
        if Instant::now() + delay >= job.deadline {
            return None;
        }
        if !tried.budget.is_none_or(RetryBudget::withdraw) {
            self.metrics
                .retry_budget_exhausted
                .with_label_values(&[&*job.api])
                .inc();
            return None;
        }
        match renew {
            Renew::Nothing => {}
            Renew::Sig => {
                self.signer.renew();
                done.sig = true;
            }
            Renew::KeyIfChanged => done.key = true,
        }
        match slow {
            Some(Slow::Group) if job.group.is_some() => {
                self.pacer.slow_down(&job.api, job.group.as_ref())
            }
            Some(Slow::Sdkappid) => self.pacer.slow_down_app(&job.api),
            Some(Slow::Group | Slow::App) => self.pacer.slow_down(&job.api, None),
            None => {}
        }
        self.metrics
            .retries
            .with_label_values(&[&*job.api, reason])
            .inc();
        tracing::info!(
            request_id = job.request_id,
            api = &*job.api,
            reason,
            attempt = tried.attempt,
            delay_ms = delay.as_millis() as u64,
            "Retrying."
        );
        Some(delay)
    }

    /// Re-reads a rotated `secret_key_file`; see [`Signer::reload_key`].
    pub(crate) fn reload_key(&self) -> bool {
        let changed = self.signer.reload_key();
        if changed {
            self.metrics
                .usersig_expiry
                .set(self.signer.expires_at() as f64);
        }
        changed
    }

    /// Re-reads the key file and says whether the key has changed since `key_changes` was read.
    fn key_changed_since(&self, key_changes: u64) -> bool {
        self.reload_key();
        self.signer.key_changes() != key_changes
    }

    /// One signed attempt, now, with a fresh `random` (its caller times it).
    async fn attempt(&self, api: &ApiMetrics, body: Bytes) -> Result<Reply, Error> {
        let query = self.signer.query();
        let metrics = &self.metrics;
        api.upstream_attempts().inc();
        metrics.upstream_in_flight.inc();
        let result = self.upstream.send(&api.name, &query, body).await;
        metrics.upstream_in_flight.dec();
        metrics.usersig_expiry.set(self.signer.expires_at() as f64);
        result
    }
}
