//! Local decryption of the legacy `contacts[].phone_encrypt` ciphertexts (API notes §4).
//!
//! This module owns the one piece of cryptography the job does itself: deriving an AES-256 key
//! and IV from the AppSecret and opening the unprefixed base64 ciphertexts. It is pure (no I/O,
//! no logging) so that it can be tested against the published vectors, and so that neither the
//! key nor a plaintext phone can leak through it: errors and `Debug` never contain either.
//!
//! Newer ciphertexts (prefix `Enc.`) cannot be opened locally; [`is_platform_cipher`] tells the
//! caller to send those to the platform's batch decrypt endpoint instead.

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

type Aes256CbcDec = cbc::Decryptor<aes::Aes256>;
type Aes256CbcEnc = cbc::Encryptor<aes::Aes256>;

/// Length of the normalised AppSecret, in characters (and, for a usable key, in bytes).
const SECRET_LEN: usize = 32;

/// The AES block size: every ciphertext is a whole, non-zero number of blocks.
const BLOCK_LEN: usize = 16;

/// The prefix of the newer ciphertexts that only the platform can decrypt.
const PLATFORM_PREFIX: &str = "Enc.";

/// Why a ciphertext could not be decrypted (never contains the plaintext or the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecryptError {
    /// The ciphertext is not standard, padded base64.
    Base64,
    /// The decoded ciphertext is empty or not a whole number of 16-byte blocks.
    Length,
    /// The PKCS#7 padding is wrong: usually the wrong AppSecret, or a corrupted ciphertext.
    Padding,
    /// The decrypted bytes are not UTF-8.
    Utf8,
    /// The normalised AppSecret is not 32 bytes long (it has non-ASCII characters).
    Key,
}

impl std::fmt::Display for DecryptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DecryptError::Base64 => "not valid base64",
            DecryptError::Length => "ciphertext is not a whole number of AES blocks",
            DecryptError::Padding => "bad padding (wrong AppSecret or corrupted ciphertext)",
            DecryptError::Utf8 => "decrypted text is not valid UTF-8",
            DecryptError::Key => "AppSecret is not 32 ASCII characters after normalisation",
        })
    }
}

impl std::error::Error for DecryptError {}

/// The AppSecret normalised to exactly 32 characters (§4 step 1).
///
/// A longer secret loses one character from the left, then one from the right, in turn (left
/// first) until 32 remain; a shorter one gains a `#` on the left, then on the right, in turn
/// (left first) until it has 32. Characters, not bytes, are counted.
pub fn normalize_secret(secret: &str) -> String {
    let mut chars: Vec<char> = secret.chars().collect();
    let mut at_left = true;
    while chars.len() > SECRET_LEN {
        if at_left {
            chars.remove(0);
        } else {
            chars.pop();
        }
        at_left = !at_left;
    }
    while chars.len() < SECRET_LEN {
        if at_left {
            chars.insert(0, '#');
        } else {
            chars.push('#');
        }
        at_left = !at_left;
    }
    chars.into_iter().collect()
}

/// Key and IV derived once from the AppSecret; decrypts many phones.
#[derive(Clone)]
pub struct PhoneCipher {
    /// The 32 bytes of the normalised AppSecret (AES-256 key).
    key: [u8; SECRET_LEN],
    /// The right half of the key, `secret[16..32]`.
    iv: [u8; BLOCK_LEN],
}

impl PhoneCipher {
    /// Derives the key (the normalised secret) and the IV (its right 16 bytes).
    ///
    /// Fails with [`DecryptError::Key`] when the normalised secret is not 32 bytes, which happens
    /// only when it contains non-ASCII characters.
    pub fn new(app_secret: &str) -> Result<PhoneCipher, DecryptError> {
        let normalised = normalize_secret(app_secret);
        let key: [u8; SECRET_LEN] = normalised
            .as_bytes()
            .try_into()
            .map_err(|_| DecryptError::Key)?;
        let iv: [u8; BLOCK_LEN] = key[BLOCK_LEN..].try_into().map_err(|_| DecryptError::Key)?;
        Ok(PhoneCipher { key, iv })
    }

    /// Decrypts one legacy `phone_encrypt` value: base64 (surrounding whitespace is ignored),
    /// AES-256-CBC, PKCS#7, UTF-8.
    pub fn decrypt(&self, phone_encrypt: &str) -> Result<String, DecryptError> {
        let data = STANDARD
            .decode(phone_encrypt.trim())
            .map_err(|_| DecryptError::Base64)?;
        if data.is_empty() || data.len() % BLOCK_LEN != 0 {
            return Err(DecryptError::Length);
        }
        let plain = Aes256CbcDec::new(&self.key.into(), &self.iv.into())
            .decrypt_padded_vec_mut::<Pkcs7>(&data)
            .map_err(|_| DecryptError::Padding)?;
        String::from_utf8(plain).map_err(|_| DecryptError::Utf8)
    }

    /// Encrypts `plaintext` the way the platform does and returns standard base64.
    ///
    /// The job itself never encrypts: this exists for tests and for the offline fake server,
    /// which must hand out ciphertexts that [`PhoneCipher::decrypt`] opens.
    pub fn encrypt(&self, plaintext: &str) -> String {
        let data = Aes256CbcEnc::new(&self.key.into(), &self.iv.into())
            .encrypt_padded_vec_mut::<Pkcs7>(plaintext.as_bytes());
        STANDARD.encode(data)
    }
}

impl std::fmt::Debug for PhoneCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PhoneCipher(***)")
    }
}

/// True for the newer platform ciphertexts ("Enc." prefix) that only the batch decrypt endpoint can open.
///
/// Surrounding whitespace is ignored, as in [`PhoneCipher::decrypt`]; the prefix is case-sensitive.
pub fn is_platform_cipher(s: &str) -> bool {
    s.trim().starts_with(PLATFORM_PREFIX)
}

/// A one-way fingerprint of the AppSecret (32 hex digits), stored beside the client token so
/// that a changed secret is not answered with a token fetched with the old one.
///
/// Davies–Meyer over AES-256 (each 32-byte block of the Merkle–Damgård-padded secret is the key
/// that encrypts the running value, which is then XORed in): recovering the secret from it is
/// recovering an AES key from a known plaintext. It is a fingerprint, not a password hash.
pub fn secret_fingerprint(secret: &str) -> String {
    use aes::cipher::generic_array::GenericArray;
    use aes::cipher::{BlockEncrypt, KeyInit};
    let bytes = secret.as_bytes();
    let mut message = bytes.to_vec();
    message.push(0x80);
    while !(message.len() + 8).is_multiple_of(SECRET_LEN) {
        message.push(0);
    }
    message.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    let mut state = *b"douyin-order-syn";
    for block in message.chunks(SECRET_LEN) {
        let cipher = aes::Aes256::new(GenericArray::from_slice(block));
        let mut out = GenericArray::clone_from_slice(&state);
        cipher.encrypt_block(&mut out);
        for (s, o) in state.iter_mut().zip(out.iter()) {
            *s ^= o;
        }
    }
    state.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_fingerprint_is_stable_and_tells_secrets_apart() {
        let a = secret_fingerprint("0123456789abcdef0123456789abcdef");
        assert_eq!(a, secret_fingerprint("0123456789abcdef0123456789abcdef"));
        assert_eq!(a.len(), 32);
        assert!(!a.contains("0123456789abcdef"));
        for other in [
            "0123456789abcdef0123456789abcdeF",
            "",
            "x",
            &"a".repeat(100),
        ] {
            assert_ne!(a, secret_fingerprint(other), "{other}");
        }
    }
    use aes::cipher::block_padding::NoPadding;

    /// The §4 test vectors: (AppSecret, plaintext, phone_encrypt).
    const VECTORS: [(&str, &str, &str); 8] = [
        (
            "0123456789abcdef0123456789abcdef",
            "12345678910",
            "tyUWQwYuUmVFJtElAL+D7Q==",
        ),
        (
            "00112233445566778899aabbccddeeff",
            "13800138000",
            "+UQEgOvlfeWm42nhvEgoGA==",
        ),
        (
            "abcdefghijklmnopqrstuvwxyz0123",
            "13800138000",
            "D0937w8CBHK3d27W+sRoxA==",
        ),
        (
            "abcdefghijklmnopqrstuvwxyz012",
            "13800138000",
            "wgHZQEfCl8Z9Mt3EuuYWPQ==",
        ),
        (
            "XYabcdefghijklmnopqrstuvwxyz012345Z",
            "13800138000",
            "o+M2s2GKWtIsYKYIGRUGFQ==",
        ),
        (
            "0123456789abcdefghijklmnopqrstuvwxyz",
            "13912345678",
            "JtPcAK4d7irOawRWCeV/LA==",
        ),
        (
            "00112233445566778899aabbccddeeff",
            "张三",
            "4ODU2KGQHr0Egc7WidCHvw==",
        ),
        (
            "00112233445566778899aabbccddeeff",
            "Enc-test-李四-0123456789",
            "YDXRQATYArkVz9ebmGGFfc5lgD11vTiGpVqWhyo2tmg=",
        ),
    ];

    const SECRET: &str = "00112233445566778899aabbccddeeff";

    fn cipher(secret: &str) -> PhoneCipher {
        match PhoneCipher::new(secret) {
            Ok(cipher) => cipher,
            Err(e) => panic!("{secret:?}: {e}"),
        }
    }

    /// Encrypts raw bytes with the cipher's key and IV, without adding padding.
    fn encrypt_raw_blocks(cipher: &PhoneCipher, blocks: &[u8]) -> String {
        let data = Aes256CbcEnc::new(&cipher.key.into(), &cipher.iv.into())
            .encrypt_padded_vec_mut::<NoPadding>(blocks);
        STANDARD.encode(data)
    }

    #[test]
    fn every_test_vector_decrypts_to_its_plaintext() {
        for (secret, plain, encrypted) in VECTORS {
            assert_eq!(
                cipher(secret).decrypt(encrypted).as_deref(),
                Ok(plain),
                "secret {secret:?} ({} chars)",
                secret.chars().count()
            );
        }
    }

    #[test]
    fn every_test_vector_encrypts_to_its_exact_ciphertext() {
        for (secret, plain, encrypted) in VECTORS {
            assert_eq!(
                cipher(secret).encrypt(plain),
                encrypted,
                "secret {secret:?} ({} chars)",
                secret.chars().count()
            );
        }
    }

    #[test]
    fn a_32_character_secret_is_kept_as_it_is() {
        assert_eq!(normalize_secret(SECRET), SECRET);
    }

    #[test]
    fn a_29_character_secret_gets_two_hashes_on_the_left_and_one_on_the_right() {
        assert_eq!(
            normalize_secret("abcdefghijklmnopqrstuvwxyz012"),
            "##abcdefghijklmnopqrstuvwxyz012#"
        );
    }

    #[test]
    fn a_30_character_secret_gets_one_hash_on_each_side() {
        assert_eq!(
            normalize_secret("abcdefghijklmnopqrstuvwxyz0123"),
            "#abcdefghijklmnopqrstuvwxyz0123#"
        );
    }

    #[test]
    fn a_31_character_secret_gets_one_hash_on_the_left() {
        assert_eq!(
            normalize_secret("abcdefghijklmnopqrstuvwxyz01234"),
            "#abcdefghijklmnopqrstuvwxyz01234"
        );
    }

    #[test]
    fn a_33_character_secret_loses_its_first_character() {
        assert_eq!(
            normalize_secret("Xabcdefghijklmnopqrstuvwxyz012345"),
            "abcdefghijklmnopqrstuvwxyz012345"
        );
    }

    #[test]
    fn a_35_character_secret_loses_two_characters_on_the_left_and_one_on_the_right() {
        assert_eq!(
            normalize_secret("XYabcdefghijklmnopqrstuvwxyz012345Z"),
            "abcdefghijklmnopqrstuvwxyz012345"
        );
    }

    #[test]
    fn a_36_character_secret_loses_two_characters_on_each_side() {
        assert_eq!(
            normalize_secret("0123456789abcdefghijklmnopqrstuvwxyz"),
            "23456789abcdefghijklmnopqrstuvwx"
        );
    }

    #[test]
    fn an_empty_secret_becomes_32_hashes() {
        assert_eq!(normalize_secret(""), "#".repeat(32));
    }

    #[test]
    fn normalisation_counts_characters_not_bytes() {
        let secret = format!("{}é", "a".repeat(31));
        assert_eq!(normalize_secret(&secret), secret);
        assert_eq!(normalize_secret(&secret).chars().count(), 32);
    }

    #[test]
    fn iv_is_the_right_half_of_the_secret() {
        let c = cipher("0123456789abcdefGHIJKLMNOPQRSTUV");
        assert_eq!(&c.key, b"0123456789abcdefGHIJKLMNOPQRSTUV");
        assert_eq!(&c.iv, b"GHIJKLMNOPQRSTUV");
    }

    #[test]
    fn the_iv_of_a_long_secret_comes_from_the_normalised_secret() {
        let c = cipher("0123456789abcdefghijklmnopqrstuvwxyz");
        assert_eq!(&c.key, b"23456789abcdefghijklmnopqrstuvwx");
        assert_eq!(&c.iv, b"ijklmnopqrstuvwx");
    }

    #[test]
    fn a_non_ascii_secret_is_refused_as_a_key_error() {
        let secret = format!("{}é", "a".repeat(31));
        assert_eq!(PhoneCipher::new(&secret).err(), Some(DecryptError::Key));
        assert_eq!(PhoneCipher::new("密钥").err(), Some(DecryptError::Key));
    }

    #[test]
    fn surrounding_whitespace_around_the_ciphertext_is_ignored() {
        assert_eq!(
            cipher(SECRET)
                .decrypt(" \t+UQEgOvlfeWm42nhvEgoGA==\r\n")
                .as_deref(),
            Ok("13800138000")
        );
    }

    #[test]
    fn text_that_is_not_base64_is_a_base64_error() {
        let c = cipher(SECRET);
        for bad in [
            "not base64!",
            "+UQEgOvlfeWm42nhvEgoGA",
            "+UQEgOvlfeWm42nh vEgoGA==",
            "-UQEgOvlfeWm42nhvEgoGA==",
            "Enc.abcdef",
            "=",
        ] {
            assert_eq!(c.decrypt(bad), Err(DecryptError::Base64), "{bad:?}");
        }
    }

    #[test]
    fn a_ciphertext_that_is_not_whole_blocks_is_a_length_error() {
        let c = cipher(SECRET);
        for len in [0, 1, 15, 17, 31, 33] {
            let encoded = STANDARD.encode(vec![7u8; len]);
            assert_eq!(
                c.decrypt(&encoded),
                Err(DecryptError::Length),
                "{len} bytes"
            );
        }
        assert_eq!(c.decrypt("   "), Err(DecryptError::Length));
    }

    #[test]
    fn a_block_with_bad_padding_is_a_padding_error() {
        let c = cipher(SECRET);
        let mut block = *b"13800138000\x05\x05\x05\x05\x00";
        assert_eq!(
            c.decrypt(&encrypt_raw_blocks(&c, &block)),
            Err(DecryptError::Padding)
        );
        block[15] = 17;
        assert_eq!(
            c.decrypt(&encrypt_raw_blocks(&c, &block)),
            Err(DecryptError::Padding)
        );
        block[15] = 5;
        block[14] = 4;
        assert_eq!(
            c.decrypt(&encrypt_raw_blocks(&c, &block)),
            Err(DecryptError::Padding)
        );
    }

    #[test]
    fn decrypted_bytes_that_are_not_utf8_are_a_utf8_error() {
        let c = cipher(SECRET);
        let mut block = [0x0du8; 16];
        block[..3].copy_from_slice(&[0xff, 0xfe, 0xfd]);
        assert_eq!(
            c.decrypt(&encrypt_raw_blocks(&c, &block)),
            Err(DecryptError::Utf8)
        );
    }

    #[test]
    fn the_wrong_secret_gives_an_error_not_a_phone() {
        let c = cipher("ffeeddccbbaa99887766554433221100");
        let result = c.decrypt("+UQEgOvlfeWm42nhvEgoGA==");
        assert_ne!(result.as_deref(), Ok("13800138000"));
        assert_eq!(result, Err(DecryptError::Padding));
    }

    #[test]
    fn the_left_half_as_iv_would_not_match_the_vectors() {
        let right = cipher(SECRET);
        let left = PhoneCipher {
            key: right.key,
            iv: *b"0011223344556677",
        };
        assert_ne!(left.encrypt("13800138000"), "+UQEgOvlfeWm42nhvEgoGA==");
    }

    #[test]
    fn garbage_input_never_panics() {
        let c = cipher(SECRET);
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let alphabet: Vec<char> =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/= .-_é张"
                .chars()
                .collect();
        for _ in 0..5_000 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let len = usize::try_from(state >> 58).unwrap_or(0);
            let text: String = (0..len)
                .map(|i| {
                    let pick = (state >> (i % 50)) as usize % alphabet.len();
                    alphabet[pick]
                })
                .collect();
            let _ = c.decrypt(&text);
        }
        for len in 1..=64 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 % 256) as u8).collect();
            let _ = c.decrypt(&STANDARD.encode(bytes));
        }
    }

    #[test]
    fn encrypt_and_decrypt_round_trip_any_text() {
        let c = cipher("short");
        for plain in [
            "",
            "1",
            "0123456789abcdef",
            "0123456789abcdefX",
            "+86 138 0013 8000",
            "王五",
        ] {
            assert_eq!(c.decrypt(&c.encrypt(plain)).as_deref(), Ok(plain));
        }
    }

    #[test]
    fn debug_does_not_print_the_key() {
        let c = cipher(SECRET);
        let printed = format!("{c:?} {c:#?}");
        assert_eq!(format!("{c:?}"), "PhoneCipher(***)");
        assert!(!printed.contains("0011"));
        assert!(!printed.contains("48, 48"));
    }

    #[test]
    fn error_messages_are_short_phrases_without_secrets() {
        let all = [
            DecryptError::Base64,
            DecryptError::Length,
            DecryptError::Padding,
            DecryptError::Utf8,
            DecryptError::Key,
        ];
        assert_eq!(DecryptError::Base64.to_string(), "not valid base64");
        for e in all {
            let text = e.to_string();
            assert!(!text.is_empty() && text.len() < 80, "{text}");
            let _: &dyn std::error::Error = &e;
        }
    }

    #[test]
    fn only_the_enc_dot_prefix_marks_a_platform_ciphertext() {
        assert!(is_platform_cipher("Enc.AAAABBBBCCCC"));
        assert!(is_platform_cipher("  Enc.AAAA"));
        assert!(!is_platform_cipher("tyUWQwYuUmVFJtElAL+D7Q=="));
        assert!(!is_platform_cipher("enc.AAAA"));
        assert!(!is_platform_cipher("Enc-test"));
        assert!(!is_platform_cipher("Enc"));
        assert!(!is_platform_cipher(""));
        for (_, _, encrypted) in VECTORS {
            assert!(!is_platform_cipher(encrypted));
        }
    }
}
