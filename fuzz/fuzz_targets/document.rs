//! Every Kura document kind, both suites, from the same bytes: the envelope
//! and each body must be a typed error or a value, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wallet_core::ceremony::dealer::Dealing;
use wallet_core::ceremony::dkg::{Round1Document, Round2Document};
use wallet_core::ceremony::maintain::{
    RefreshEndorsement, RefreshProposal, RefreshReceipt, RepairMessage,
};
use wallet_core::ceremony::{IdentityCard, Roster};
use wallet_core::format;
use wallet_core::messages::{CommitmentsMessage, PackageMessage, ShareMessage, SignatureMessage};
use wallet_core::withdrawal::request::{
    Approval, MessageRequest, Signed, WithdrawalPackages, WithdrawalRequest, WithdrawalShares,
};
use wallet_core::{KeyShare, KuraSuite, PublicGroup, Secp256k1, Secp256k1Tr};

fn suite<C: KuraSuite>(data: &[u8]) {
    let _ = PublicGroup::<C>::from_document(data);
    let _ = KeyShare::<C>::from_secret_document(data);
    let _ = format::decode::<CommitmentsMessage<C>>(data);
    let _ = format::decode::<PackageMessage<C>>(data);
    let _ = format::decode::<ShareMessage<C>>(data);
    let _ = format::decode::<SignatureMessage<C>>(data);
    let _ = format::decode::<Round1Document<C>>(data);
    let _ = format::decode::<Round2Document<C>>(data);
    let _ = format::decode::<Roster<C>>(data);
    let _ = format::decode::<Dealing<C>>(data);
    let _ = format::decode::<RefreshProposal<C>>(data);
    let _ = format::decode::<RefreshEndorsement<C>>(data);
    let _ = format::decode::<RefreshReceipt<C>>(data);
    let _ = format::decode::<RepairMessage<C>>(data);
}

fuzz_target!(|data: &[u8]| {
    suite::<Secp256k1Tr>(data);
    suite::<Secp256k1>(data);
    let _ = IdentityCard::from_json(data);
    let _ = format::decode::<Signed<WithdrawalRequest>>(data);
    let _ = format::decode::<Signed<MessageRequest>>(data);
    let _ = format::decode::<Signed<Approval>>(data);
    let _ = format::decode::<WithdrawalPackages>(data);
    let _ = format::decode::<Signed<WithdrawalShares>>(data);
});
