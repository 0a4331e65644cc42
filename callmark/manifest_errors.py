"""Errors raised while loading, signing or verifying release metadata (one class per attack)."""


class ManifestError(Exception):
    """A release metadata file or artefact failed to load or verify."""


class MetadataFormatError(ManifestError):
    """Metadata is not valid JSON of the expected shape (missing or mistyped field)."""


class SignatureError(ManifestError):
    """Metadata is not signed by enough trusted keys."""


class BadSignatureError(SignatureError):
    """A trusted key's signature does not match the metadata: it was modified after signing."""


class UntrustedKeyError(SignatureError):
    """Metadata is signed only by keys the trusted root does not delegate to for this role."""


class ThresholdError(SignatureError):
    """Fewer distinct trusted keys signed the metadata than the role's threshold requires."""


class RollbackError(ManifestError):
    """Metadata has a lower version than one already trusted (rollback attack)."""


class FreezeError(ManifestError):
    """Metadata has expired (freeze attack: a stale release served forever)."""


class MixAndMatchError(ManifestError):
    """Artefacts or metadata from different releases were combined."""


class TamperedArtefactError(ManifestError):
    """An artefact's length or SHA-256 differs from what the signed manifest lists."""


class EndlessDataError(ManifestError):
    """A download went on past the length the signed metadata lists (endless-data attack)."""


class ClientTooOldError(ManifestError):
    """The manifest needs a newer client format than this client implements."""


class ReleaseError(ManifestError):
    """A release cannot be built, published, promoted or rolled back (publisher side)."""


class KeyStoreError(ReleaseError):
    """The signing keys directory is missing, incomplete or unreadable."""
