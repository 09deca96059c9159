// A real client check with the library under Contracts UI (@polkadot/api-contract 16.5.6):
// deploys target/ink/backup_registry.contract on a running node, calls every message of the
// metadata (dry run first, then a signed transaction for the writes), checks each result, and
// decodes every event the metadata declares. Exits non-zero on the first mismatch.
//
// Usage: node check.mjs [ws-url]   (default ws://127.0.0.1:9944; the node must be running)
import { existsSync, readFileSync } from 'node:fs';
import { ApiPromise, Keyring, WsProvider } from '@polkadot/api';
import { CodePromise } from '@polkadot/api-contract';
import { CID as Cid } from 'multiformats/cid';
import { base32 } from 'multiformats/bases/base32';

const url = process.argv[2] ?? 'ws://127.0.0.1:9944';
const bundlePath = new URL('../target/ink/backup_registry.contract', import.meta.url);
const bundle = JSON.parse(readFileSync(bundlePath, 'utf8'));
// A CIDv1 (raw, sha2-256) in multibase base32 whose digest is `n`, as the unit tests make them.
const CID = (n) => {
  const hex = `01551220${n.toString(16).padStart(64, '0')}`;
  const bits = [...hex].map((h) => parseInt(h, 16).toString(2).padStart(4, '0')).join('');
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  return 'b' + bits.padEnd(Math.ceil(bits.length / 5) * 5, '0').match(/.{5}/g)
    .map((group) => alphabet[parseInt(group, 2)]).join('');
};
const NODE = 'node-1';
const RECIPIENT = 'age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p';

const api = await ApiPromise.create({ provider: new WsProvider(url), noInitWarn: true });
const keyring = new Keyring({ type: 'sr25519' });
const [alice, bob, charlie, dave, ferdie] = ['Alice', 'Bob', 'Charlie', 'Dave', 'Ferdie'].map(
  (name) => keyring.addFromUri(`//${name}`)
);

const calledMessages = new Set();
const decodedEvents = new Set();

function fail(what) {
  console.error(`client check FAILED: ${what}`);
  process.exit(1);
}

/** Signs and sends `tx`; resolves with the result once in a block, rejects on a dispatch error. */
function submit(tx, pair) {
  return new Promise((resolve, reject) => {
    tx.signAndSend(pair, (result) => {
      if (result.dispatchError) {
        reject(new Error(result.dispatchError.toString()));
      } else if (result.status.isInBlock) {
        resolve(result);
      }
    }).catch(reject);
  });
}

/** Names and arguments of decoded contract events, recorded as seen. */
function record(decoded) {
  return decoded.map(({ event, args }) => {
    const name = event.identifier.split('::').pop();
    decodedEvents.add(event.identifier);
    const fields = Object.fromEntries(event.args.map((arg, i) => [arg.name, args[i].toHuman()]));
    return `${name} ${JSON.stringify(fields)}`;
  });
}

// ---- Deploy ----
const code = new CodePromise(api, bundle, bundle.source.wasm);
const config = {
  maxSnapshotsPerBackup: 2,
  maxBackupsPerAccount: 4,
  minFrequency: 10,
  maxFrequency: 1000,
  defaultFrequency: 100,
  claimTimeout: 600,
  upgradeDelay: 0,
};
// Dry runs may use up to a block's weight; the instantiation gets a fixed, ample limit.
const maxGas = api.registry.createType('WeightV2', api.consts.system.blockWeights.maxBlock);
const deployGas = api.registry.createType('WeightV2', { refTime: 50_000_000_000n, proofSize: 2_000_000n });
const deployed = await submit(
  code.tx.new({ gasLimit: deployGas, storageDepositLimit: null }, [alice.address], config),
  alice
);
const contract = deployed.contract;
if (!contract) fail('instantiation returned no contract');
const constructorEvents = deployed.events
  .filter(({ event }) => api.events.contracts.ContractEmitted.is(event))
  .map((recordOfEvent) => contract.abi.decodeEvent(recordOfEvent));
console.log(`deployed at ${contract.address.toString()}: ${record(constructorEvents).join('; ')}`);

/** Dry-runs `message`; returns the decoded output as JSON (`{ ok: ... }` unless a LangError). */
async function query(pair, message, ...args) {
  const { output, result, gasRequired } = await contract.query[message](
    pair.address,
    { gasLimit: maxGas },
    ...args
  );
  if (result.isErr) fail(`${message}: ${result.asErr.toString()}`);
  calledMessages.add(message);
  return { value: output.toJSON().ok, gasRequired };
}

/** Dry-runs `message` expecting `Ok`, then sends it; returns the dry run's value and the events. */
async function call(pair, message, ...args) {
  const { value, gasRequired } = await query(pair, message, ...args);
  if (value === null || typeof value !== 'object' || !('ok' in value)) {
    fail(`${message} returned ${JSON.stringify(value)}`);
  }
  const tx = contract.tx[message]({ gasLimit: gasRequired, storageDepositLimit: null }, ...args);
  const result = await submit(tx, pair);
  const events = record(result.contractEvents ?? []);
  console.log(`${message}(${args.map(String).join(', ')}) -> ${JSON.stringify(value.ok)}`);
  events.forEach((line) => console.log(`    event ${line}`));
  return value.ok;
}

/** Dry-runs `message` expecting `Err(error)`. */
async function refused(pair, message, error, ...args) {
  const { value } = await query(pair, message, ...args);
  if (value?.err !== error) fail(`${message} should fail with ${error}, got ${JSON.stringify(value)}`);
  console.log(`${message}(${args.map(String).join(', ')}) -> Err(${error}) as expected`);
}

/** Reads a query and prints it. */
async function read(message, ...args) {
  const { value } = await query(alice, message, ...args);
  console.log(`${message}(${args.map(String).join(', ')}) = ${JSON.stringify(value)}`);
  return value;
}

// ---- Admin and authorities ----
await read('admin');
await read('pendingAdmin');
await read('isPaused');
await read('config');
await read('authorityCount');
await call(alice, 'addAuthority', ferdie.address);
if (!(await read('isAuthority', ferdie.address))) fail('ferdie should be an authority');
await call(alice, 'removeAuthority', ferdie.address);
await refused(ferdie, 'addSnapshot', 'NotAuthorized', NODE, CID(9), '', 9, bob.address, 1);

// ---- Backups and snapshots ----
await refused(alice, 'addSnapshot', 'BackupNotFound', NODE, CID(9), '', 9, bob.address, 1);
await call(bob, 'createBackup', NODE, 'laptop');
// Bob's backup holds the storage its later writes use: authorities pay no deposit for it.
const reserve = await read('backupReserve', bob.address, NODE);
await call(bob, 'fundBackup', NODE, 1);
if ((await read('backupReserve', bob.address, NODE)).bytes <= reserve.bytes) fail('not funded');
await refused(bob, 'fundBackup', 'ReserveFull', NODE, 4294967295);
await refused(charlie, 'fundBackup', 'BackupNotFound', NODE, 1);
for (const n of [1, 2, 3]) {
  // Each snapshot after the first comes before bob's frequency: bob allows it.
  if (n > 1) {
    await refused(alice, 'addSnapshot', 'TooSoon', NODE, CID(n), '', n, bob.address, 1);
    await call(bob, 'requestSnapshot', NODE);
  }
  await call(alice, 'addSnapshot', NODE, CID(n), 'nightly', n, bob.address, 1000 * n);
}
await call(bob, 'setBackupOffchainWorkerFrequency', 600);
if ((await read('backupFrequency', bob.address)) !== 600) fail('frequency not stored');
await call(bob, 'grantAccess', NODE, charlie.address);
await read('backup', bob.address, NODE);
await read('backupById', 0);
await read('backupsOf', bob.address);
const kept = await read('snapshots', bob.address, NODE, 0, 10);
if (kept.ok.length !== 2) fail('retention should keep 2 snapshots');
await read('latestSnapshot', bob.address, NODE);
await read('snapshotByCid', CID(3));

// ---- One content, one snapshot: other spellings of CID(3), made by multiformats ----
const recorded = Cid.parse(CID(3));
const aliases = [
  Cid.createV0(recorded.multihash).toString(),
  Cid.createV1(0x70, recorded.multihash).toString(),
];
for (const alias of aliases) {
  const found = await read('snapshotByCid', alias);
  if (found?.[1]?.cid !== CID(3)) fail(`${alias} should find the snapshot recorded as ${CID(3)}`);
  await refused(alice, 'addSnapshot', 'CidAlreadyRecorded', NODE, alias, '', 9, bob.address, 1);
}
// The version written as the padded varint 0x81 0x00: refused, and it finds nothing.
const padded = base32.encode(Uint8Array.from([0x81, 0x00, ...recorded.bytes.slice(1)]));
await refused(alice, 'addSnapshot', 'InvalidCid', NODE, padded, '', 9, bob.address, 1);
if ((await read('snapshotByCid', padded)) !== null) fail('a padded varint found a snapshot');
if (!(await read('grantees', bob.address, NODE)).some((grantee) => grantee === charlie.address)) {
  fail('charlie is a grantee');
}
await call(bob, 'setBackupRecipient', NODE, RECIPIENT);
if ((await read('backupRecipient', bob.address, NODE)) !== RECIPIENT) fail('recipient not stored');
await refused(bob, 'setBackupRecipient', 'InvalidRecipient', NODE, 'age1-not-a-recipient');
await call(bob, 'setBackupRecipient', NODE, null);

// ---- Pins: kept beyond retention (2 here) ----
await refused(charlie, 'pinSnapshot', 'NotBackupOwner', CID(2));
await call(bob, 'pinSnapshot', CID(2));
await call(bob, 'requestSnapshot', NODE);
await call(alice, 'addSnapshot', NODE, CID(4), 'nightly', 4, bob.address, 4000);
if ((await read('snapshots', bob.address, NODE, 0, 10)).ok.length !== 3) fail('pinned one kept');
if ((await read('pinnedSnapshots', bob.address, NODE))[0]?.cid !== CID(2)) fail('CID(2) pinned');
await refused(bob, 'unpinSnapshot', 'SnapshotNotPinned', CID(3));
await call(bob, 'unpinSnapshot', CID(2));
if ((await read('snapshotByCid', CID(2))) !== null) fail('unpinned, CID(2) is pruned');

// ---- Restore lifecycle ----
await refused(dave, 'restoreFromSnapshot', 'NotBackupOwner', CID(3));
const cancelled = await call(charlie, 'restoreFromSnapshot', aliases[0]);
if ((await read('restoreRequest', cancelled)).cid !== CID(3)) fail('the request names the recorded CID');
await read('pendingRestoreRequests', 0, 10);
await read('pendingRestoreRequestCount');
await call(charlie, 'cancelRestoreRequest', cancelled);
const failed = await call(bob, 'restoreLatestSnapshot', bob.address, NODE);
await call(alice, 'claimRestoreRequest', failed);
await call(alice, 'failRestoreRequest', failed, 'cid mismatch');
const fulfilled = await call(bob, 'restoreLatestSnapshot', bob.address, NODE);
await call(alice, 'claimRestoreRequest', fulfilled);
await call(alice, 'renewClaim', fulfilled);
await call(alice, 'fulfilRestoreRequest', fulfilled);
await refused(alice, 'fulfilRestoreRequest', 'RestoreRequestAlreadyClosed', fulfilled);
await read('restoreRequest', fulfilled);

// ---- Grants and deletion ----
await call(bob, 'revokeAccess', NODE, charlie.address);
await call(bob, 'createBackup', 'node-2', '');
await call(bob, 'deleteBackup', 'node-2');
await call(bob, 'deleteUserStorage');
if ((await read('backupsOf', bob.address)).length !== 0) fail('deletion left backups');

// ---- Pause, upgrade, admin transfer ----
await call(alice, 'setPaused', true);
await refused(bob, 'createBackup', 'Paused', NODE, '');
await call(alice, 'setPaused', false);
// The registry was instantiated with `upgradeDelay: 0`, so a proposal may be applied at once.
await refused(alice, 'applyUpgrade', 'NoUpgradeProposed');
await call(alice, 'proposeUpgrade', `0x${'ab'.repeat(32)}`);
await call(alice, 'cancelUpgrade');
await call(alice, 'proposeUpgrade', bundle.source.hash);
if ((await read('pendingUpgrade'))?.codeHash !== bundle.source.hash) fail('no pending upgrade');
await call(alice, 'applyUpgrade');
if ((await read('storageVersion')) !== 1) fail('storage version is not 1');
await call(alice, 'proposeAdmin', charlie.address);
await call(alice, 'cancelAdminProposal');
await refused(charlie, 'acceptAdmin', 'NotPendingAdmin');
await call(alice, 'proposeAdmin', dave.address);
await call(dave, 'acceptAdmin');
if ((await read('admin')) !== dave.address) fail('admin did not move to dave');

// ---- Worst-case deletions against this node's limit ----
// The benchmark measures `delete_backup` and one `delete_user_storage` call at the hard bounds
// (on pallet-contracts in-process) into target/bench/worst-case.json; each must need at most
// half of the maximum weight of one extrinsic, read from this node's runtime.
const worstCasePath = new URL('../target/bench/worst-case.json', import.meta.url);
if (existsSync(worstCasePath)) {
  const { normal } = api.consts.system.blockWeights.perClass;
  const limit = normal.maxExtrinsic.isSome
    ? normal.maxExtrinsic.unwrap()
    : api.consts.system.blockWeights.maxBlock;
  const [maxRefTime, maxProofSize] = [limit.refTime.toBigInt(), limit.proofSize.toBigInt()];
  for (const [message, cost] of Object.entries(JSON.parse(readFileSync(worstCasePath, 'utf8')))) {
    const [refTime, proofSize] = [BigInt(cost.ref_time), BigInt(cost.proof_size)];
    const share = (used, max) => `${((Number(used) / Number(max)) * 100).toFixed(1)}%`;
    console.log(
      `${message} at the hard bounds: ref_time ${refTime} (${share(refTime, maxRefTime)} of ` +
        `${maxRefTime}), proof_size ${proofSize} (${share(proofSize, maxProofSize)} of ${maxProofSize})`
    );
    if (refTime * 2n > maxRefTime || proofSize * 2n > maxProofSize) {
      fail(`${message} needs more than half of the node's maximum extrinsic weight`);
    }
  }
} else {
  console.log('NOTE: target/bench/worst-case.json is missing (run the benchmark first): the ' +
    'worst-case deletions are not compared with the node\'s limit');
}

// ---- Coverage of the metadata ----
const allMessages = contract.abi.messages.map((message) => message.method);
const missedMessages = allMessages.filter((message) => !calledMessages.has(message));
const allEvents = contract.abi.events.map((event) => event.identifier);
const missedEvents = allEvents.filter((event) => !decodedEvents.has(event));
if (missedMessages.length) fail(`messages never called: ${missedMessages.join(', ')}`);
if (missedEvents.length) fail(`events never decoded: ${missedEvents.join(', ')}`);
console.log(
  `client check passed: ${allMessages.length} messages called, ${allEvents.length} events decoded`
);
await api.disconnect();
