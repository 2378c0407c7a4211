/**
 * @module
 * Signed notes, verifier and signer keys, and checkpoint cosignatures
 * (c2sp.org/signed-note, c2sp.org/tlog-cosignature). Pure: no Node built-ins. The faster
 * `node:crypto` Ed25519 backend is imported separately from `./ed25519-node.js`.
 */
export {
  ED25519_PUBLIC_KEY_SIZE,
  ED25519_SEED_SIZE,
  ED25519_SIGNATURE_SIZE,
  isWeakPublicKey,
  nobleEd25519,
  type Ed25519,
} from './ed25519.js';
export {
  ALG_COSIGNATURE_V1,
  ALG_ED25519,
  formatKeyId,
  formatVerifierKey,
  generateKey,
  isValidKeyName,
  keyId,
  parseSignerKey,
  parseVerifierKey,
  webCryptoRandom,
  type KeyAlgorithm,
  type RandomSource,
  type SignerKey,
  type VerifierKey,
} from './keys.js';
export {
  checkNoteText,
  formatNote,
  formatSignatureLine,
  InvalidSignatureError,
  MAX_NOTE_SIZE,
  MAX_SIGNATURES,
  newSigner,
  newVerifier,
  openNote,
  parseNote,
  signNote,
  UnverifiedNoteError,
  type Note,
  type NoteSignature,
  type NoteSigner,
  type NoteVerifier,
  type OpenedNote,
} from './note.js';
export {
  COSIGNATURE_TIMESTAMP_SIZE,
  COSIGNATURE_V1_SIZE,
  cosignatureMessage,
  cosignatureTimestamp,
  newCosignatureVerifier,
  newCosigner,
  type Cosigner,
  type CosignatureVerifier,
} from './cosignature.js';
