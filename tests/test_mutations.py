"""Each security test can fail: break one control in a rendered project and watch the
tests that guard it go red.

A mutation replaces pieces of rendered code, found by their tokens rather than their
layout: a reformat (other line breaks, indentation inside brackets, quote style, a magic
trailing comma) still finds them, and `test_mutations_survive_a_reformat` proves it on
every mutation. If the code a mutation targets is gone, the mutation is stale and this test
fails loudly, so it cannot silently stop proving anything. The unmutated project passes
the same tests, so every red comes from the broken control.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import PACKAGE, make_venv, render


@dataclass(frozen=True)
class Mutation:
    control: str
    name: str
    file: str  # relative to src/<package>/
    edits: tuple[tuple[str, str], ...]  # (old code, new code), applied in order
    tests: str  # pytest node selection, run in the mutant
    must_fail: tuple[str, ...]  # test names that must be reported FAILED
    profile: str = "intermediate"
    also: tuple[str, tuple[tuple[str, str], ...]] | None = None  # edits of a second file


MUTATIONS = [
    Mutation(
        "C01",
        "tls-accepts-1.0-and-cbc",
        "tls.py",
        (
            (
                "        context.minimum_version = ssl.TLSVersion.TLSv1_2\n"
                "        context.set_ciphers(TLS12_CIPHERS)\n",
                "        context.minimum_version = ssl.TLSVersion.TLSv1\n"
                "        context.set_ciphers('ALL:@SECLEVEL=0')\n",
            ),
        ),
        "tests/test_tls.py",
        ("test_tls_below_1_2_is_refused", "test_tls_1_2_cbc_suites_are_refused"),
    ),
    Mutation(
        "C01",
        "modern-accepts-1.2",
        "tls.py",
        (
            (
                "context.minimum_version = ssl.TLSVersion.TLSv1_3",
                "context.minimum_version = ssl.TLSVersion.TLSv1_2",
            ),
        ),
        "tests/test_tls.py",
        ("test_tls_1_2_is_refused_under_modern",),
        profile="modern",
    ),
    Mutation(
        "C01",
        "plaintext-listener",
        "server.py",
        (
            (
                "ssl_context_factory=lambda _config, _default: context,",
                "",
            ),
        ),
        "tests/test_tls.py::test_plaintext_http_gets_no_http_answer",
        ("test_plaintext_http_gets_no_http_answer",),
    ),
    Mutation(
        "C02",
        "polling-allowed",
        "server.py",
        (
            (
                'transports=["websocket"],',
                "",
            ),
        ),
        "tests/test_transport.py",
        ("test_polling_transport_is_refused",),
    ),
    # The guard and python-engineio both check the origin: a mutation breaks both layers.
    Mutation(
        "C03",
        "origin-wildcard",
        "guard.py",
        (('return None if origin in self._origins else "origin_refused"', "return None"),),
        "tests/test_origin.py",
        (
            "test_unlisted_origin_is_refused_at_the_upgrade",
            "test_unlisted_origin_is_refused_with_a_valid_token",
        ),
        also=(
            "server.py",
            (
                (
                    "cors_allowed_origins=list(settings.cors_allowed_origins),",
                    'cors_allowed_origins="*",',
                ),
            ),
        ),
    ),
    Mutation(
        "C03",
        "origin-list-empty",
        "guard.py",
        (('return None if origin in self._origins else "origin_refused"', "return None"),),
        "tests/test_origin.py",
        ("test_unlisted_origin_is_refused_at_the_upgrade",),
        also=(
            "server.py",
            (
                (
                    "cors_allowed_origins=list(settings.cors_allowed_origins),",
                    "cors_allowed_origins=[],",
                ),
            ),
        ),
    ),
    Mutation(
        "C04",
        "missing-auth-accepted",
        "auth.py",
        (
            (
                'raise AuthError("auth_missing")',
                "return Identity(sub='anonymous', scopes=frozenset(),"
                " expires_at=1e12, issued_at=0.0)",
            ),
        ),
        "tests/test_auth.py",
        ("test_connect_without_auth_is_refused", "test_malformed_auth_payload_is_refused"),
    ),
    Mutation(
        "C04",
        "query-string-logged",
        "seclog.py",
        (
            (
                "for kind in (RedactQueryStrings, DropDenialQuirk):",
                "for kind in (DropDenialQuirk,):",
            ),
        ),
        "tests/test_auth.py",
        ("test_token_only_in_query_string_is_refused_and_not_logged",),
    ),
    Mutation(
        "C04",
        "library-loggers-at-info",
        "seclog.py",
        (("logger.setLevel(logging.WARNING)", "logger.setLevel(logging.INFO)"),),
        "tests/test_auth.py",
        ("test_tokens_and_payloads_stay_out_of_the_logs_at_debug",),
    ),
    Mutation(
        "C04",
        "websocket-frames-logged-at-debug",
        "seclog.py",
        (("logger.setLevel(max(logging.INFO, logging.getLevelName(level)))", "pass"),),
        "tests/test_auth.py",
        ("test_tokens_and_payloads_stay_out_of_the_logs_at_debug",),
    ),
    Mutation(
        "C05",
        "claims-not-required",
        "auth.py",
        (
            (
                'options={"require": list(REQUIRED_CLAIMS)},',
                "",
            ),
        ),
        "tests/test_auth.py",
        ("test_token_missing_a_required_claim_is_refused",),
    ),
    Mutation(
        "C05",
        "issuer-not-checked",
        "auth.py",
        (
            (
                "issuer=self._issuer,",
                "issuer=None,",
            ),
        ),
        "tests/test_auth.py",
        ("test_token_with_bad_claims_is_refused",),
    ),
    Mutation(
        "C05",
        "second-audience",
        "auth.py",
        (
            (
                "audience=self._audience,",
                'audience=[self._audience, "another-service"],',
            ),
        ),
        "tests/test_auth.py",
        ("test_token_with_bad_claims_is_refused",),
    ),
    Mutation(
        "C05",
        "signature-not-verified",
        "auth.py",
        (
            (
                'options={"require": list(REQUIRED_CLAIMS)},',
                'options={"require": list(REQUIRED_CLAIMS), "verify_signature": False},',
            ),
        ),
        "tests/test_auth.py",
        (
            "test_token_with_a_wrong_signature_is_refused",
            "test_token_with_a_tampered_payload_is_refused",
        ),
    ),
    Mutation(
        "C05",
        "algorithm-not-pinned",
        "auth.py",
        (
            (
                'if header.get("alg") != ALGORITHM:',
                'if header.get("alg") not in (ALGORITHM, "PS256"):',
            ),
            ("algorithms=[ALGORITHM],", 'algorithms=[ALGORITHM, "PS256"],'),
        ),
        "tests/test_auth.py",
        ("test_token_of_another_algorithm_is_refused",),
    ),
    Mutation(
        "C05",
        "embedded-jwk-trusted",
        "auth.py",
        (
            ("if KEY_REFERENCE_HEADERS & header.keys():", "if False:"),
            (
                "key = await self._keys.key_for(header)",
                'key = jwt.PyJWK(header["jwk"]).key if "jwk" in header '
                "else await self._keys.key_for(header)",
            ),
        ),
        "tests/test_auth.py",
        ("test_token_naming_its_own_key_is_refused",),
    ),
    Mutation(
        "C05",
        "jwks-fetched-on-the-event-loop",
        "keys.py",
        (
            (
                "jwk = await asyncio.to_thread(self._client.get_signing_key, kid)",
                "jwk = self._client.get_signing_key(kid)",
            ),
        ),
        "tests/test_jwks.py",
        ("test_jwks_fetch_runs_off_the_event_loop",),
    ),
    Mutation(
        "C09",
        "schemas-lax",
        "schemas.py",
        (
            (
                'ConfigDict(extra="forbid", strict=True, frozen=True)',
                'ConfigDict(extra="allow", frozen=True)',
            ),
        ),
        "tests/test_payloads.py",
        ("test_invalid_payload_is_answered_invalid_payload",),
    ),
    # docs/asyncapi.json describes the events and their schemas: an event added without
    # regenerating it fails the project's drift test.
    Mutation(
        "C09",
        "event-added-undocumented",
        "events.py",
        (
            (
                'router.on("message", Message, rooms.message, scope=SCOPE_WRITE)',
                'router.on("message", Message, rooms.message, scope=SCOPE_WRITE); '
                'router.on("shout", Message, rooms.message, scope=SCOPE_WRITE)',
            ),
        ),
        "tests/test_asyncapi.py",
        (
            "test_the_committed_document_is_the_generators",
            "test_every_registered_event_is_described_with_its_schema_and_scope",
        ),
    ),
    Mutation(
        "C10",
        "uvicorn-frame-limit-default",
        "server.py",
        (
            (
                "ws_max_size=settings.max_message_bytes,",
                "ws_max_size=16 * 1024 * 1024,",
            ),
        ),
        "tests/test_size_limits.py",
        ("test_frame_over_the_limit_closes_only_the_sender",),
    ),
    Mutation(
        "C10",
        "tls-receive-buffer-per-connection",
        "asynciotls.py",
        (("    protocol.get_buffer = _shared_receive_buffer  # type: ignore", "    pass  #"),),
        "tests/test_tls.py -k receive_buffer",
        ("test_tls_connections_share_one_receive_buffer",),
    ),
    Mutation(
        "C20",
        "no-security-headers",
        "guard.py",
        (("        send = with_security_headers(send)\n", ""),),
        "tests/test_transport.py",
        ("test_http_responses_carry_security_headers", "test_polling_transport_is_refused"),
    ),
    Mutation(
        "C20",
        "refused-upgrade-without-headers",
        "guard.py",
        (("        send = with_security_headers(send)\n", ""),),
        "tests/test_origin.py",
        ("test_refused_upgrade_carries_the_security_headers",),
        also=(
            "websocket.py",
            (("            if name not in response.headers:", "            if False:"),),
        ),
    ),
    Mutation(
        "C06",
        "expiry-not-scheduled",
        "lifecycle.py",
        (
            (
                "conn)\n        self._schedule_expiry(session)\n",
                "conn)\n",
            ),
        ),
        "tests/test_sessions.py",
        ("test_session_ends_with_a_notice_when_its_token_expires",),
    ),
    Mutation(
        "C06",
        "reauth-for-any-subject",
        "lifecycle.py",
        (("if identity.sub != session.identity.sub:", "if False:"),),
        "tests/test_sessions.py",
        ("test_reauth_with_a_worse_token_is_refused_and_the_session_still_expires",),
    ),
    Mutation(
        "C07",
        "revoke-does-nothing",
        "lifecycle.py",
        (('await self.end(sid, "revoked", namespace)', "pass"),),
        "tests/test_sessions.py",
        ("test_revoke_disconnects_every_connection_of_the_subject",),
    ),
    Mutation(
        "C07",
        "revoked-tokens-reconnect",
        "revocations.py",
        (("return identity.issued_at <= revoked_at", "return False"),),
        "tests/test_sessions.py",
        ("test_revoked_tokens_cannot_reconnect_but_newer_ones_can",),
    ),
    Mutation(
        "C07",
        "revocations-forgotten-at-restart",
        "lifecycle.py",
        (("await self._revocations.save()", "pass"),),
        "tests/test_sessions.py",
        ("test_one_node_keeps_its_revocations_across_a_restart",),
    ),
    Mutation(
        "C07",
        "admin-scope-not-required",
        "lifecycle.py",
        (("if ADMIN_SCOPE not in identity.scopes:", "if False:"),),
        "tests/test_sessions.py",
        ("test_admin_namespace_requires_the_admin_scope",),
    ),
    Mutation(
        "C11",
        "no-connection-caps",
        "guard.py",
        (("or self._caps.acquire(state.address)", "or None"),),
        "tests/test_limits.py",
        (
            "test_connection_flood_from_one_address_hits_its_cap_while_another_connects",
            "test_total_connection_cap",
        ),
    ),
    Mutation(
        "C11",
        "no-connect-deadline",
        "guard.py",
        (("_Deadlines(settings.connect_timeout_seconds)", "_Deadlines(3600)"),),
        "tests/test_limits.py",
        ("test_connection_that_never_authenticates_is_closed_at_the_deadline",),
    ),
    Mutation(
        "C11",
        "no-request-deadline",
        "http11.py",
        (
            (
                "        super().connection_made(transport)\n        self._arm()\n",
                "        super().connection_made(transport)\n",
            ),
        ),
        "tests/test_limits.py -k request",
        (
            "test_silent_client_is_closed_at_the_request_deadline",
            "test_request_trickled_a_byte_at_a_time_is_cut_off",
        ),
    ),
    Mutation(
        "C11",
        "request-deadline-not-restarted",
        "http11.py",
        (
            (
                "        self._arm()\n        super().on_response_complete()",
                "        super().on_response_complete()",
            ),
        ),
        "tests/test_limits.py -k trickled",
        ("test_request_trickled_a_byte_at_a_time_is_cut_off",),
    ),
    Mutation(
        "C11",
        "request-deadline-outlives-upgrade",
        "http11.py",
        (
            (
                "        self._disarm()\n        super().handle_websocket_upgrade(event)",
                "        super().handle_websocket_upgrade(event)",
            ),
        ),
        "tests/test_limits.py -k outlives",
        ("test_authenticated_connection_outlives_the_deadline",),
    ),
    Mutation(
        "C11",
        "tls-handshake-unbounded",
        "asynciotls.py",
        (("self._ssl_handshake_timeout = self._sslcontext.handshake_seconds", "pass"),),
        "tests/test_limits.py -k handshake_deadline",
        ("test_silent_tcp_client_is_closed_at_the_handshake_deadline",),
    ),
    Mutation(
        "C11",
        "no-frame-cap",
        "websocket.py",
        (("if not self._frames.take():", "if False:"),),
        "tests/test_limits.py -k frame_flood",
        (
            "test_frame_flood_cuts_the_connection_off[ping]",
            "test_frame_flood_cuts_the_connection_off[event]",
        ),
    ),
    Mutation(
        "C20",
        "request-framed-two-ways-served",
        "http11.py",
        (('if b"content-length" in names and b"transfer-encoding" in names:', "if False:"),),
        "tests/test_transport.py -k ambiguous",
        (
            "test_ambiguous_or_malformed_requests_get_one_400_and_a_closed_connection[cl-and-te]",
            "test_ambiguous_or_malformed_requests_get_one_400_and_a_closed_connection[te-and-cl]",
        ),
    ),
    Mutation(
        "C20",
        "bad-request-without-headers",
        "http11.py",
        (("            *SECURITY_HEADERS,\n", ""),),
        "tests/test_transport.py -k ambiguous",
        (
            "test_ambiguous_or_malformed_requests_get_one_400_and_a_closed_connection"
            "[bad-request-line]",
        ),
    ),
    Mutation(
        "C05",
        "token-lifetime-unbounded",
        "auth.py",
        (("if identity.expires_at - identity.issued_at > self._max_lifetime:", "if False:"),),
        "tests/test_auth.py -k longer_than",
        ("test_token_living_longer_than_the_maximum_is_refused",),
    ),
    Mutation(
        "C05",
        "token-type-not-checked",
        "auth.py",
        (("if self._required_type is not None and", "if False and"),),
        "tests/test_auth.py -k type_is_required",
        ("test_token_of_another_type_is_refused_when_a_type_is_required",),
    ),
    Mutation(
        "C06",
        "session-lifetime-unbounded",
        "lifecycle.py",
        (
            (
                "session.opened_at + self._settings.max_session_seconds",
                'float("inf")',
            ),
        ),
        "tests/test_sessions.py -k absolute",
        ("test_reauth_cannot_extend_a_session_past_its_absolute_lifetime",),
    ),
    Mutation(
        "C06",
        "idle-timeout-ignored",
        "lifecycle.py",
        (("        if timeout > 0:\n", "        if False:\n"),),
        "tests/test_sessions.py -k idle",
        ("test_idle_session_ends_with_a_notice_and_an_active_one_stays",),
    ),
    Mutation(
        "C07",
        "revocation-ttl-unchecked",
        "posture.py",
        (
            (
                "if settings.revocation_ttl_seconds < settings.max_token_lifetime_seconds:",
                "if False:",
            ),
        ),
        "tests/test_startup.py -k revocation_ttl",
        ("test_check_names_each_insecure_setting",),
    ),
    Mutation(
        "C13",
        "tls-handshake-failures-silent",
        "asynciotls.py",
        (
            (
                "    protocol._fatal_error = _logged_fatal_error  # type: ignore",
                "    pass  #",
            ),
        ),
        "tests/test_security_log.py -k tls_handshakes",
        ("test_failed_tls_handshakes_are_logged",),
    ),
    Mutation(
        "C13",
        "refused-events-without-connection-id",
        "dispatch.py",
        (
            (
                "            reason=code,\n            sub=session.identity.sub,\n"
                "            conn=session.conn,\n",
                "            reason=code,\n            sub=session.identity.sub,\n",
            ),
        ),
        "tests/test_security_log.py -k connection_id",
        ("test_every_refused_event_has_a_line_with_the_connection_id",),
    ),
    Mutation(
        "C13",
        "log-times-local-without-offset",
        "cli.py",
        (
            (
                "handler.setFormatter(seclog.UTCFormatter(seclog.LOG_FORMAT))",
                "handler.setFormatter(logging.Formatter(seclog.LOG_FORMAT))",
            ),
        ),
        "tests/test_cli.py -k descriptors",
        ("test_running_out_of_descriptors_is_one_line_per_interval_and_recovers",),
    ),
    Mutation(
        "C14",
        "expired-certificate-served",
        "posture.py",
        (("if cert.not_valid_after_utc <= now:", "if False:"),),
        "tests/test_startup.py -k unusable_certificate",
        ("test_check_names_an_unusable_certificate[expired]",),
    ),
    Mutation(
        "C14",
        "future-certificate-served",
        "posture.py",
        (("if cert.not_valid_before_utc > now:", "if False:"),),
        "tests/test_startup.py -k unusable_certificate",
        ("test_check_names_an_unusable_certificate[not-yet-valid]",),
    ),
    Mutation(
        "C14",
        "init-dev-certificate-in-production",
        "posture.py",
        (("if settings.is_production and any(unit.value", "if False and any(unit.value"),),
        "tests/test_startup.py -k unusable_certificate",
        ("test_check_names_an_unusable_certificate[init-dev-ca]",),
    ),
    Mutation(
        "C14",
        "certificate-expiry-not-announced",
        "posture.py",
        (("if dt.timedelta(0) < left <= CERTIFICATE_WARNING:", "if False:"),),
        "tests/test_startup.py -k about_to_expire",
        ("test_check_warns_of_a_certificate_about_to_expire",),
    ),
    Mutation(
        "C08",
        "rooms-claim-ignored",
        "events.py",
        (("        if not may_join(ctx.identity.rooms, payload.room):\n", "        if False:\n"),),
        "tests/test_payloads.py -k rooms",
        (
            "test_joins_are_limited_to_the_rooms_the_token_names",
            "test_token_without_a_rooms_claim_joins_no_room",
        ),
    ),
    Mutation(
        "C11",
        "engineio-sessions-of-broken-websockets-kept",
        "guard.py",
        (("                await state.release()\n", "                pass\n"),),
        "tests/test_packets.py -k broken",
        ("test_a_broken_websocket_leaves_no_session_behind",),
    ),
    Mutation(
        "C20",
        "oversized-upgrade-left-open",
        "websocket.py",
        (
            (
                "if not self.handshake_initiated and self.conn.handshake_exc is not None:",
                "if False:",
            ),
        ),
        "tests/test_transport.py -k below_the_application",
        (
            "test_upgrades_refused_below_the_application_carry_the_security_headers"
            "[request-line-over-8k]",
            "test_upgrades_refused_below_the_application_carry_the_security_headers"
            "[transfer-encoding]",
        ),
    ),
    Mutation(
        "C13",
        "client-paths-logged-whole",
        "seclog.py",
        (("MAX_PATH_CHARS: Final = 200", "MAX_PATH_CHARS: Final = 10**6"),),
        "tests/test_security_log.py -k bounded",
        ("test_a_client_that_never_authenticates_writes_a_bounded_log",),
    ),
    Mutation(
        "C11",
        "no-accept-caps",
        "listener.py",
        (("reason = self.caps.admit(client)", "reason = None"),),
        "tests/test_limits.py -k at_accept",
        (
            "test_connections_that_never_upgrade_are_capped_per_address_at_accept",
            "test_new_connections_per_address_are_rate_limited_at_accept",
        ),
    ),
    Mutation(
        "C11",
        "descriptor-exhaustion-left-to-asyncio",
        "listener.py",
        (("if exc.errno not in _EXHAUSTED:", "if True:"),),
        "tests/test_cli.py -k descriptors",
        ("test_running_out_of_descriptors_is_one_line_per_interval_and_recovers",),
    ),
    Mutation(
        "C11",
        "pings-not-counted",
        "websocket.py",
        (
            (
                "        if self._admit(None):\n            super().handle_ping()",
                "        super().handle_ping()",
            ),
        ),
        "tests/test_limits.py -k frame_flood",
        ("test_frame_flood_cuts_the_connection_off[ping]",),
    ),
    Mutation(
        "C11",
        "fragments-uncapped",
        "websocket.py",
        (("if self._fragments > MAX_FRAGMENTS:", "if False:"),),
        "tests/test_limits.py -k fragments",
        ("test_message_in_many_fragments_is_cut_off",),
    ),
    Mutation(
        "C11",
        "slow-reader-kept",
        "websocket.py",
        (('        self.abort("slow_reader")', "        super().pause_writing()"),),
        "tests/test_limits.py -k stops_reading",
        ("test_client_that_stops_reading_is_cut_off_and_others_are_served",),
    ),
    Mutation(
        "C13",
        "invalid-utf8-traceback",
        "websocket.py",
        (
            (
                'if self.curr_msg_data_type == "text" and not self.close_sent:',
                "if False:",
            ),
        ),
        "tests/test_limits.py -k utf8",
        ("test_invalid_utf8_text_is_one_line_and_a_cut",),
    ),
    Mutation(
        "C11",
        "heartbeat-left-to-the-library",
        "server.py",
        (
            ("ping_interval=settings.ping_interval_seconds,", ""),
            ("ping_timeout=settings.ping_timeout_seconds,", ""),
        ),
        "tests/test_packets.py -k heartbeat",
        ("test_engineio_heartbeat_closes_a_client_that_stops_answering",),
    ),
    Mutation(
        "C08",
        "reserved-event-names-dispatched",
        "packets.py",
        (
            (
                "if not isinstance(name, str) or name in RESERVED_EVENTS:",
                "if not isinstance(name, str):",
            ),
        ),
        "tests/test_packets.py -k disconnect",
        (
            'test_undeclared_event_names_are_refused_and_the_session_stays_whole[["disconnect"]]',
            "test_a_disconnect_event_does_not_stop_the_expiry",
        ),
    ),
    Mutation(
        "C11",
        "undeclared-events-free",
        "dispatch.py",
        (('if not self._within_budget(session, "-"):', "if False:"),),
        "tests/test_packets.py -k budget",
        ("test_undeclared_events_are_paid_from_the_event_budget",),
    ),
    Mutation(
        "C11",
        "binary-attachments-kept",
        "packets.py",
        (("if not isinstance(data, str) or data[:1] in _BINARY_TYPES:", "if False:"),),
        "tests/test_packets.py -k binary",
        (
            "test_binary_attachments_are_not_kept",
            "test_packets_outside_the_protocol_cut_the_connection_off[frames0-binary_refused]",
        ),
    ),
    Mutation(
        "C13",
        "unsolicited-acks-reach-the-library",
        "packets.py",
        (("if not id or id not in pending:", "if False:"),),
        "tests/test_packets.py -k outside_the_protocol",
        ("test_packets_outside_the_protocol_cut_the_connection_off[frames3-unexpected_ack]",),
    ),
    Mutation(
        "C11",
        "repeated-connects-kept",
        "packets.py",
        (("if state.connect_refusals >= MAX_CONNECT_REFUSALS:", "if False:"),),
        "tests/test_packets.py -k repeated",
        ("test_repeated_refused_connects_cut_the_connection_off",),
    ),
    Mutation(
        "C11",
        "no-namespace-no-deadline",
        "guard.py",
        (("        state.on_idle = functools.partial(self._deadlines.add, websocket)\n", ""),),
        "tests/test_packets.py -k without_a_namespace",
        ("test_websocket_left_without_a_namespace_is_closed_at_the_connect_deadline",),
    ),
    Mutation(
        "C06",
        "session-end-leaves-the-transport-open",
        "lifecycle.py",
        (("            await self._sio.close_transport(eio_sid)\n", "            pass\n"),),
        "tests/test_sessions.py -k closes",
        (
            "test_expired_session_closes_the_websocket_whatever_the_client_does",
            "test_revoke_closes_the_websockets_and_admin_sessions_of_the_subject",
        ),
    ),
    Mutation(
        "C07",
        "revoke-spares-admin-sessions",
        "lifecycle.py",
        (("(self._admin_sessions, ADMIN_NAMESPACE),", ""),),
        "tests/test_sessions.py -k admin_sessions",
        ("test_revoke_closes_the_websockets_and_admin_sessions_of_the_subject",),
    ),
    Mutation(
        "C11",
        "no-subject-cap",
        "lifecycle.py",
        (("self._settings.max_sessions_per_subject", "10**9"),),
        "tests/test_sessions.py -k capped",
        ("test_sessions_per_subject_are_capped",),
    ),
    Mutation(
        "C20",
        "server-written-refusals-without-headers",
        "websocket.py",
        (("            if name not in response.headers:", "            if False:"),),
        "tests/test_transport.py -k below_the_application",
        (
            "test_upgrades_refused_below_the_application_carry_the_security_headers[eio3]",
            "test_upgrades_refused_below_the_application_carry_the_security_headers[no-websocket-key]",
        ),
    ),
    Mutation(
        "C01",
        "key-exchange-groups-unrestricted",
        "tls.py",
        (("    context.key_exchange_groups = restrict_groups(context)\n", ""),),
        "tests/test_tls.py -k group",
        (
            "test_key_exchange_group_outside_the_profile_is_refused",
            "test_server_context_fails_closed_on_a_group_beyond_the_profile",
        ),
    ),
    Mutation(
        "C01",
        "key-exchange-groups-unproven",
        "tlsgroups.py",
        (("    _prove(context, in_force)\n", ""),),
        "tests/test_tls.py -k fails_closed",
        ("test_server_context_fails_closed_on_a_group_beyond_the_profile",),
    ),
    Mutation(
        "C11",
        "no-event-budget",
        "dispatch.py",
        (("if session.events is None or session.events.take():", "if True:"),),
        "tests/test_limits.py",
        (
            "test_flooder_is_rate_limited_while_a_bystander_keeps_its_acks",
            "test_sustained_flood_ends_the_session",
        ),
    ),
    Mutation(
        "C11",
        "no-rooms-cap",
        "events.py",
        (("and len(ctx.rooms) >= self._max_rooms", "and False"),),
        "tests/test_limits.py",
        ("test_rooms_per_connection_are_bounded",),
    ),
    Mutation(
        "C12",
        "forwarded-from-anyone",
        "server.py",
        (
            ("proxy_headers=bool(settings.forwarded_allow_ips),", "proxy_headers=True,"),
            (
                "forwarded_allow_ips=list(settings.forwarded_allow_ips) or None,",
                'forwarded_allow_ips="*",',
            ),
        ),
        "tests/test_client_address.py",
        ("test_forwarded_header_is_ignored_without_configured_proxies",),
    ),
    Mutation(
        "C13",
        "refusal-logs-the-auth-payload",
        "lifecycle.py",
        (
            (
                "self._refused(environ, exc.reason, namespace)",
                'self._refused(environ, f"{exc.reason}:{auth}", namespace)',
            ),
        ),
        "tests/test_security_log.py",
        ("test_attack_session_is_logged_without_secrets",),
    ),
    Mutation(
        "C13",
        "engineio-exceptions-reach-uvicorn",
        "guard.py",
        (
            (
                "        except Exception as exc:  # noqa: BLE001\n",
                "        except ZeroDivisionError as exc:\n",
            ),
        ),
        "tests/test_fuzz.py",
        ("test_malformed_engineio_packet_is_one_log_line_and_a_protocol_close",),
    ),
    Mutation(
        "C13",
        "library-tracebacks-logged",
        "seclog.py",
        (("logger.addFilter(TracebackToClassName())", "pass"),),
        "tests/test_auth.py -k library_tracebacks",
        ("test_library_tracebacks_are_cut_to_one_line",),
    ),
    Mutation(
        "C09",
        "validation-errors-escape",
        "dispatch.py",
        (("except ValidationError:", "except TypeError:"),),
        "tests/test_fuzz.py",
        ("test_every_event_answers_any_payload_with_an_envelope",),
    ),
    Mutation(
        "C14",
        "serve-ignores-findings",
        "cli.py",
        (
            (
                "    if _refusals(settings):\n        return EXIT_REFUSED\n",
                "    _refusals(settings)\n",
            ),
        ),
        "tests/test_startup.py -k origin_wildcard",
        ("test_production_server_refuses_to_start_on_insecure_setting",),
    ),
    Mutation(
        "C14",
        "debug-logging-allowed",
        "posture.py",
        (
            (
                'settings.is_production and settings.log_level == "DEBUG"',
                "False",
            ),
        ),
        "tests/test_startup.py -k debug_logging",
        (
            "test_check_names_each_insecure_setting",
            "test_production_server_refuses_to_start_on_insecure_setting",
        ),
    ),
    Mutation(
        "C01",
        "reload-keeps-serving-the-old-certificate",
        "reload.py",
        (("            connection.context = chosen\n", "            pass\n"),),
        "tests/test_reload.py -k renewed",
        ("test_sighup_serves_a_renewed_certificate_to_new_connections_and_keeps_live_ones",),
    ),
    Mutation(
        # The obvious design: load the new files into the listener's own context. OpenSSL
        # takes the certificate and drops the key that no longer matches it.
        "C01",
        "reload-loads-unchecked-files-into-the-listener",
        "reload.py",
        (
            ("        found = posture.findings(settings)\n", "        found = []\n"),
            (
                "            material = _prepare(settings)\n",
                "            self.tls_context.load_cert_chain(\n"
                "                str(settings.tls_cert_file), str(settings.tls_key_file)\n"
                "            )\n"
                "            material = _prepare(settings)\n",
            ),
        ),
        "tests/test_reload.py -k failed_reload",
        (
            "test_failed_reload_keeps_the_old_certificate_and_logs_one_line_with_the_reason"
            "[key_of_another_certificate]",
        ),
    ),
    Mutation(
        "C05",
        "reload-keeps-the-old-jwt-key",
        "reload.py",
        (("        self.keys.source = material.keys\n", "        pass\n"),),
        "tests/test_reload.py -k jwt_verification_key",
        ("test_sighup_rotates_the_jwt_verification_key",),
    ),
    Mutation(
        "C05",
        "reload-keeps-the-cached-jwks",
        "reload.py",
        (
            (
                "        self.keys.source = material.keys\n",
                "        if not isinstance(self.keys.source, keys.JwksKeySource):\n"
                "            self.keys.source = material.keys\n",
            ),
        ),
        "tests/test_jwks.py -k reload",
        ("test_reload_drops_the_jwks_cache_so_a_key_rotated_under_its_kid_applies",),
    ),
    Mutation(
        "C14",
        "reload-skips-the-posture",
        "reload.py",
        (("        found = posture.findings(settings)\n", "        found = []\n"),),
        "tests/test_reload.py -k posture_finding",
        ("test_reload_with_a_posture_finding_changes_nothing",),
    ),
]


# A token of Python source: a string literal (with its prefix), a name or number, or one
# other character. Whitespace between tokens is layout, which a reformat may change.
TOKEN = re.compile(r"""[rbfuRBFU]{0,2}(?:'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")|\w+|\S""")


def code_pattern(old: str) -> re.Pattern[str]:
    """A pattern that finds `old` in source whatever its layout: its leading indentation and
    final line break as written, then its tokens with any whitespace between them (at least
    one space between two words) and the parentheses a formatter adds around a long
    expression, either quote style, and an optional trailing comma before a closing
    bracket. The test that applies it asks for exactly one match, and a reformatted mutant
    must still compile."""
    body = old.strip()
    lead = old[: len(old) - len(old.lstrip())]
    trail = old[len(old.rstrip()) :]
    parts = [re.escape(lead)]
    previous = ""
    for match in TOKEN.finditer(body):
        token = match.group()
        if previous:
            word = previous[-1].isalnum() or previous[-1] == "_"
            words = word and (token[0].isalnum() or token[0] == "_")
            parts.append(r"[\s()]+" if words else r"[\s()]*")
        if token in ")]}" and previous != ",":
            parts.append(r"(?:,\s*)?")
        if token[-1] in "'\"" and len(token) >= 2:
            prefix = token[: token.index(token[-1])]
            inner = token[len(prefix) + 1 : -1]
            parts.append(re.escape(prefix) + "['\"]" + re.escape(inner) + "['\"]")
        else:
            parts.append(re.escape(token))
        previous = token
    parts.append(re.escape(trail))
    return re.compile("".join(parts))


def apply_edits(source: str, edits: tuple[tuple[str, str], ...], where: str) -> str:
    for old, new in edits:
        found = list(code_pattern(old).finditer(source))
        assert len(found) == 1, f"stale mutation: {old!r} found {len(found)} times in {where}"
        start, end = found[0].span()
        # Parentheses the formatter added around part of the code are taken whole.
        extra = _depth(source[start:end]) - _depth(old)
        while extra > 0 and (close := re.compile(r"\s*\)").match(source, end)):
            end, extra = close.end(), extra - 1
        while extra < 0 and (opening := re.search(r"\(\s*\Z", source[:start])):
            start, extra = opening.start(), extra + 1
        source = source[:start] + new + source[end:]
    return source


def _depth(code: str) -> int:
    """Open minus closed parentheses outside string literals."""
    bare = "".join(t for t in TOKEN.findall(code) if t[-1] not in "'\"")
    return bare.count("(") - bare.count(")")


def mutate(package: Path, mutation: Mutation) -> None:
    """Apply the mutation's edits to the package's source files in place."""
    for file, edits in ((mutation.file, mutation.edits), mutation.also or ("", ())):
        if edits:
            target = package / file
            target.write_text(apply_edits(target.read_text(), edits, str(target)))


@dataclass(frozen=True)
class Base:
    project: Path
    venv: Path


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Base]:
    """One rendered project per TLS profile, installed from its lock: each mutant runs from
    its own source tree via PYTHONPATH, which comes before the installed package (whose
    metadata, the version and description, the command line reads)."""
    made = {}
    for profile in sorted({m.profile for m in MUTATIONS}):
        project = render(tmp_path_factory.mktemp(f"base-{profile}") / "p", tls_profile=profile)
        made[profile] = Base(project, make_venv(project))
    return made


def selection(mutation: Mutation) -> tuple[str, str]:
    """The mutation's tests narrowed to the ones that must go red: its path, and a -k
    expression of its own filter (if any) and the must-fail names. Running the rest of the
    file would prove nothing more: only these are checked."""
    path, _, keyword = mutation.tests.partition(" -k ")
    names = " or ".join(sorted({name.split("[")[0] for name in mutation.must_fail}))
    return path, f"({keyword}) and ({names})" if keyword else names


def run_tests(
    base: Base, tree: Path, paths: list[str], keyword: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - the project's own interpreter
        [str(base.venv / "bin" / "python"), "-m", "pytest", "-q", "-rf", "-p",
         "no:cacheprovider", *paths, "-k", keyword],
        cwd=tree,
        env={"PATH": f"{base.venv / 'bin'}:/usr/bin:/bin", "PYTHONPATH": str(tree / "src")},
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


@pytest.mark.timeout(900)
@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: f"{m.control}-{m.name}")
def test_breaking_a_control_turns_its_tests_red(
    tmp_path: Path, bases: dict[str, Base], mutation: Mutation
) -> None:
    base = bases[mutation.profile]
    mutant = tmp_path / "mutant"
    shutil.copytree(base.project, mutant, ignore=shutil.ignore_patterns(".venv"))
    mutate(mutant / "src" / PACKAGE, mutation)

    path, keyword = selection(mutation)
    result = run_tests(base, mutant, [path], keyword)
    report = result.stdout + result.stderr
    assert result.returncode == 1, report  # 1: tests ran and some failed
    for name in mutation.must_fail:
        assert f"FAILED {path.split('::')[0]}::{name}" in report, report


@pytest.mark.timeout(900)
@pytest.mark.parametrize("profile", ["intermediate", "modern"])
def test_unmutated_projects_pass_the_same_tests(bases: dict[str, Base], profile: str) -> None:
    base = bases[profile]
    selections = [selection(m) for m in MUTATIONS if m.profile == profile]
    paths = sorted({path for path, _ in selections})
    keyword = " or ".join(sorted({f"({keyword})" for _, keyword in selections}))
    result = run_tests(base, base.project, paths, keyword)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mutations_survive_a_reformat(tmp_path: Path, bases: dict[str, Base]) -> None:
    """Every mutation still finds its code, exactly once, after the package is reformatted
    to another line length, and the mutated files still compile."""
    for profile, base in bases.items():
        package = tmp_path / profile
        shutil.copytree(base.project / "src" / PACKAGE, package)
        ruff = base.venv / "bin" / "ruff"
        subprocess.run(  # noqa: S603 - the project's own ruff
            [str(ruff), "format", "--isolated", "--line-length", "60", "--config",
             "format.quote-style = 'single'", str(package)],
            check=True, capture_output=True,
        )  # fmt: skip
        targets = {m.file for m in MUTATIONS} | {m.also[0] for m in MUTATIONS if m.also}
        changed = [
            name
            for name in targets
            if (package / name).read_text() != (base.project / "src" / PACKAGE / name).read_text()
        ]
        assert len(changed) == len(targets), sorted(targets - set(changed))
        for mutation in (m for m in MUTATIONS if m.profile == profile):
            mutant = tmp_path / f"{profile}-{mutation.name}"
            shutil.copytree(package, mutant)
            mutate(mutant, mutation)
            for name in {mutation.file} | ({mutation.also[0]} if mutation.also else set()):
                compile((mutant / name).read_text(), name, "exec")


def test_a_thread_that_dies_fails_the_test(tmp_path: Path, bases: dict[str, Base]) -> None:
    """The live test server runs in a thread: an exception that ends it fails the test that
    was running (pytest only warns by default), like one raised in a destructor."""
    base = bases["intermediate"]
    project = tmp_path / "project"
    shutil.copytree(base.project, project, ignore=shutil.ignore_patterns(".venv"))
    (project / "tests" / "test_dying_thread.py").write_text(
        "import threading\n\n\n"
        "def test_server_thread_dies() -> None:\n"
        "    thread = threading.Thread(target=lambda: 1 / 0)\n"
        "    thread.start()\n"
        "    thread.join()\n"
    )
    result = run_tests(base, project, ["tests/test_dying_thread.py"], "server_thread_dies")
    report = result.stdout + result.stderr
    assert result.returncode == 1, report
    assert "FAILED tests/test_dying_thread.py::test_server_thread_dies" in report, report
    assert "ZeroDivisionError" in report, report
