//! `wasi:keyvalue` (store, atomics, batch): buckets of the host's store,
//! opened only where the operator allows, each call counted by kind and
//! outcome. Store errors reach the guest as `error`s, never as traps.
use std::time::Instant;

use wasmtime::component::Resource;

use crate::store::{Bucket, StoreError};
use crate::telemetry::{KeyvalueOp, KeyvalueOutcome};
use crate::wasm::bindings::wasi::keyvalue::store::{Error, KeyResponse};
use crate::wasm::bindings::wasi::keyvalue::{atomics, batch, store};
use crate::wasm::state::HostState;

/// A bucket the guest opened: the host's `bucket` resource.
pub struct BucketHandle {
    bucket: Bucket,
}

/// What the host's side of each call returns: the guest's result, or a
/// trap for a broken host invariant (a handle not in the table).
type Answer<T> = wasmtime::Result<Result<T, Error>>;

impl HostState {
    /// The bucket behind `handle`.
    fn bucket(&self, handle: &Resource<BucketHandle>) -> wasmtime::Result<Bucket> {
        Ok(self.table.get(handle)?.bucket.clone())
    }

    /// Runs one store call, counts it and, for a store that may wait (Redis),
    /// takes the wait out of the callback's run time: `--guest-timeout`
    /// bounds what the guest runs, not how long the store takes to answer.
    async fn store_call<T>(
        &mut self,
        op: KeyvalueOp,
        bucket: &Bucket,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Answer<T> {
        let started = Instant::now();
        let result = call.await;
        let took = started.elapsed();
        if matches!(bucket, Bucket::Redis(_)) {
            self.call_clock.exclude(took);
        }
        let outcome = match &result {
            Ok(_) => KeyvalueOutcome::Ok,
            Err(error) if error.is_refusal() => KeyvalueOutcome::Refused,
            Err(_) => KeyvalueOutcome::Failed,
        };
        self.stats.keyvalue(op, outcome, took);
        Ok(result.map_err(|error| {
            tracing::debug!(component = %self.component, op = op.name(), %error, "store call failed");
            Error::Other(error.to_string())
        }))
    }
}

impl store::Host for HostState {
    fn open(&mut self, identifier: String) -> Answer<Resource<BucketHandle>> {
        let started = Instant::now();
        if !self.policy.may_open_bucket(&self.component, &identifier) {
            tracing::warn!(
                component = %self.component,
                bucket = %identifier,
                "guest may not open this bucket (see --allow-bucket)"
            );
            self.stats.keyvalue(KeyvalueOp::Open, KeyvalueOutcome::Denied, started.elapsed());
            return Ok(Err(Error::AccessDenied));
        }
        if !crate::store::valid_bucket_name(&identifier) {
            // Only an operator's list can name such a bucket: the check
            // when the host starts says so.
            self.stats.keyvalue(KeyvalueOp::Open, KeyvalueOutcome::Refused, started.elapsed());
            return Ok(Err(Error::NoSuchStore));
        }
        let bucket = self.store.open(&identifier);
        let handle = self.table.push(BucketHandle { bucket })?;
        self.stats.keyvalue(KeyvalueOp::Open, KeyvalueOutcome::Ok, started.elapsed());
        Ok(Ok(handle))
    }
}

impl store::HostBucket for HostState {
    async fn get(&mut self, handle: Resource<BucketHandle>, key: String) -> Answer<Option<Vec<u8>>> {
        let bucket = self.bucket(&handle)?;
        self.store_call(KeyvalueOp::Get, &bucket, bucket.get(&key)).await
    }

    async fn set(&mut self, handle: Resource<BucketHandle>, key: String, value: Vec<u8>) -> Answer<()> {
        let bucket = self.bucket(&handle)?;
        self.store_call(KeyvalueOp::Set, &bucket, bucket.set(&key, value)).await
    }

    async fn delete(&mut self, handle: Resource<BucketHandle>, key: String) -> Answer<()> {
        let bucket = self.bucket(&handle)?;
        self.store_call(KeyvalueOp::Delete, &bucket, bucket.delete(&key)).await
    }

    async fn exists(&mut self, handle: Resource<BucketHandle>, key: String) -> Answer<bool> {
        let bucket = self.bucket(&handle)?;
        self.store_call(KeyvalueOp::Exists, &bucket, bucket.exists(&key)).await
    }

    async fn list_keys(&mut self, handle: Resource<BucketHandle>, cursor: Option<u64>) -> Answer<KeyResponse> {
        let bucket = self.bucket(&handle)?;
        let page = self.store_call(KeyvalueOp::ListKeys, &bucket, bucket.list_keys(cursor)).await?;
        Ok(page.map(|page| KeyResponse { keys: page.keys, cursor: page.cursor }))
    }

    fn drop(&mut self, handle: Resource<BucketHandle>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        Ok(())
    }
}

impl atomics::Host for HostState {
    async fn increment(&mut self, handle: Resource<BucketHandle>, key: String, delta: u64) -> Answer<u64> {
        let bucket = self.bucket(&handle)?;
        self.store_call(KeyvalueOp::Increment, &bucket, bucket.increment(&key, delta)).await
    }
}

impl batch::Host for HostState {
    async fn get_many(
        &mut self,
        handle: Resource<BucketHandle>,
        keys: Vec<String>,
    ) -> Answer<Vec<Option<(String, Vec<u8>)>>> {
        let bucket = self.bucket(&handle)?;
        // What comes back must fit in the guest's memory, and so in the
        // host's bounds.
        let max_bytes = self.policy.limits.guest_memory;
        let values = self.store_call(KeyvalueOp::GetMany, &bucket, bucket.get_many(&keys, max_bytes)).await?;
        Ok(values
            .map(|values| keys.into_iter().zip(values).map(|(key, value)| value.map(|value| (key, value))).collect()))
    }

    async fn set_many(&mut self, handle: Resource<BucketHandle>, pairs: Vec<(String, Vec<u8>)>) -> Answer<()> {
        let bucket = self.bucket(&handle)?;
        self.store_call(KeyvalueOp::SetMany, &bucket, bucket.set_many(pairs)).await
    }

    async fn delete_many(&mut self, handle: Resource<BucketHandle>, keys: Vec<String>) -> Answer<()> {
        let bucket = self.bucket(&handle)?;
        self.store_call(KeyvalueOp::DeleteMany, &bucket, bucket.delete_many(&keys)).await
    }
}
