"""Abusive clients: key guessing is throttled per client address before the key is compared, and
the rate limiter's table of buckets stays bounded whatever the number of clients.

On the code before this, a request with a wrong key was answered 401 before the rate limiter ran,
so guesses were never throttled, and every identity kept a bucket forever.
"""

from __future__ import annotations

import httpx

from tests.serve.conftest import INSTANCE

BODY = {"instances": [INSTANCE]}


def keys_file(tmp_path):
    path = tmp_path / "keys.txt"
    path.write_text("right-key\n")
    return str(path)


def post(client, key: str, **headers) -> httpx.Response:
    return client.post("/v1/predict", json=BODY, headers={"Authorization": f"Bearer {key}", **headers})


def test_key_guessing_from_one_address_gets_429_and_a_valid_client_is_not_starved(runtime, server, settings, tmp_path):
    cfg = settings(api_keys_file=keys_file(tmp_path))  # the default limit: 10 wrong keys, then one every 10 s
    with server(runtime, cfg) as (url, _):
        with httpx.Client(base_url=url, timeout=30) as guesser:  # from 127.0.0.1
            guesses = [post(guesser, f"guess-{i}") for i in range(15)]
            right_key_from_there = post(guesser, "right-key")
        # another client, from another address (127.0.0.2: a real source address on the loopback)
        with httpx.Client(base_url=url, timeout=30, transport=httpx.HTTPTransport(local_address="127.0.0.2")) as other:
            served = [post(other, "right-key").status_code for _ in range(3)]
            one_wrong = post(other, "typo")
    assert [r.status_code for r in guesses] == [401] * 10 + [429] * 5
    assert all(int(r.headers["retry-after"]) >= 1 for r in guesses[10:])
    # the blocked address is not told whether a key is right: nothing it sends is compared
    assert right_key_from_there.status_code == 429
    assert served == [200, 200, 200] and one_wrong.status_code == 401


def test_the_bucket_tables_stay_bounded_under_many_clients(runtime, server, settings, tmp_path):
    """300 API keys, and 300 client addresses behind a trusted proxy (uvicorn takes X-Forwarded-For
    from 127.0.0.1), each sending once: the tables keep 40 buckets, the most recently used."""
    keys = tmp_path / "keys.txt"
    keys.write_text("".join(f"key-{i}\n" for i in range(300)))
    cfg = settings(
        api_keys_file=str(keys),
        rate_limit_per_s=0.5,
        rate_burst=2,
        rate_limit_clients=40,
        auth_failures_burst=2,
        auth_failures_per_s=0.01,
    )
    with server(runtime, cfg) as (url, app), httpx.Client(base_url=url, timeout=30) as client:
        state = app.state.serve
        for i in range(300):
            assert post(client, "wrong", **{"X-Forwarded-For": f"10.0.{i // 256}.{i % 256}"}).status_code == 401
            assert (
                client.post("/v1/predict", content=b"{}", headers={"Authorization": f"Bearer key-{i}"}).status_code
                == 422
            )
        assert len(state.auth_failures.buckets_) == 40 and len(state.limiter.buckets_) == 40
        # the most recent address is remembered: its second wrong key is its last allowed one, the third is refused
        assert post(client, "wrong", **{"X-Forwarded-For": "10.0.1.43"}).status_code == 401
        assert post(client, "wrong", **{"X-Forwarded-For": "10.0.1.43"}).status_code == 429
        assert [post(client, "key-0").status_code for _ in range(3)] == [
            200,
            200,
            429,
        ]  # a valid client: served, within its own limit


class FakeClock:
    def __init__(self):
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def test_token_bucket_refills_forgets_idle_buckets_and_evicts_the_least_recent():
    from trainwise.serve.security import TokenBucket

    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=2.0, burst=3, max_identities=3, clock=clock)
    assert [bucket.take("a") for _ in range(4)] == [0.0, 0.0, 0.0, 0.5]  # burst 3, then one token per 0.5 s
    clock.now_s += 0.5
    assert bucket.wait_s("a") == 0.0 and bucket.take("a") == 0.0 and bucket.wait_s("a") == 0.5
    bucket.take("b")
    bucket.take("c")
    bucket.take("d")  # a 4th identity: the least recently used ("a") is forgotten
    assert list(bucket.buckets_) == ["b", "c", "d"]
    clock.now_s += 1.0
    bucket.take("e")  # 1.0 s < 3 / 2.0 s: b, c, d have not refilled yet; b is evicted for e
    assert list(bucket.buckets_) == ["c", "d", "e"]
    clock.now_s += 1.5  # c and d have been idle 2.5 s >= 1.5 s: full again, so forgotten
    bucket.take("e")
    assert list(bucket.buckets_) == ["e"] and bucket.buckets_["e"][0] == 2.0
