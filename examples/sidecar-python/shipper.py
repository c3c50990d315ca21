"""The sidecar of sidecar-python: follows the function's access log in the
shared emptyDir and writes each line to its own stdout, tagged, where the
cluster's log collection picks it up. A stand-in for a real log shipper."""
import os
import sys
import time

PATH = os.path.join(os.environ.get("LOG_DIR", "/var/log/app"), "access.log")


def follow(path):
    while not os.path.exists(path):
        time.sleep(1)
    with open(path, encoding="utf-8") as f:
        while True:
            line = f.readline()
            if line:
                yield line
            else:
                time.sleep(0.5)


def main():
    try:
        for line in follow(PATH):
            sys.stdout.write("access " + line)
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
