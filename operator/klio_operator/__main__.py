"""`python -m klio_operator` is `klio-operator` (kopf: `kopf run -m klio_operator`)."""

from klio_operator.cli import main

if __name__ == "__main__":
    main()
